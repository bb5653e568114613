// Renders the status table as Markdown for docs/leds.md. A unit test compares
// the page with this output, so the page cannot drift from the code.
import { describePattern, LED_STATES, LedState, STATUS_LED_PATTERNS } from "./patterns.js";

const STATE_MEANINGS: Record<LedState, string> = {
  booting: "the appliance is starting",
  provisioning: "no identity yet: waiting for or redeeming a one-time provisioning token",
  "waiting-for-cloud": "provisioned, not yet connected to the cloud",
  online: "connected to the cloud, no general node served",
  serving: "connected, at least one general node is served",
  error: "a fault that needs attention; the log says which",
};

export function formatPatternTable(): string {
  const rows = [
    "| State | Meaning | ACT (green) | PWR (red) | ACT on a board without PWR |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const state of LED_STATES) {
    const patterns = STATUS_LED_PATTERNS[state];
    const cells = [
      `\`${state}\``,
      STATE_MEANINGS[state],
      describePattern(patterns.act),
      describePattern(patterns.pwr),
      describePattern(patterns.actWithoutPwr ?? patterns.act),
    ];
    rows.push(`| ${cells.join(" | ")} |`);
  }
  return rows.join("\n") + "\n";
}
