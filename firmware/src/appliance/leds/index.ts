export { StatusLeds, type StatusLedsOptions } from "./status-leds.js";
export { LED_STATES, STATUS_LED_PATTERNS, type LedPattern, type LedState, type StatePatterns } from "./patterns.js";
export { formatPatternTable } from "./pattern-table.js";
export { nodeLedFileSystem, type LedFileSystem } from "./sysfs-io.js";
