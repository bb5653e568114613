// Reads and writes of LED class attributes. They never throw, because the LEDs
// are a courtesy and must not stop the appliance. A failure is counted and
// logged with a rate limit instead.
import fs from "node:fs";
import { Counters } from "../../util/counters.js";
import { Logger, RateLimitedLog } from "../../util/log.js";

/** File access used for sysfs, replaceable so tests can count writes. */
export interface LedFileSystem {
  exists(file: string): boolean;
  /** Reads the whole file as UTF-8. Throws the Node.js error on failure. */
  readFile(file: string): string;
  /** Replaces the content with `value` in one write(2) call. Throws the Node.js error on failure. */
  writeFile(file: string, value: string): void;
}

// Without O_CREAT, writing a missing attribute fails with ENOENT as it does in
// sysfs, instead of creating a file. sysfs ignores O_TRUNC, and in a test tree
// it keeps a short value from leaving the tail of a longer one behind.
const WRITE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_TRUNC;

export const nodeLedFileSystem: LedFileSystem = {
  exists: (file) => fs.existsSync(file),
  readFile: (file) => fs.readFileSync(file, "utf8"),
  writeFile: writeAttribute,
};

function writeAttribute(file: string, value: string): void {
  const fd = fs.openSync(file, WRITE_FLAGS);
  try {
    const data = Buffer.from(value, "utf8");
    const written = fs.writeSync(fd, data);
    // sysfs takes one write(2) per value, so a short write cannot be completed by a second call.
    if (written !== data.length) throw new Error(`short write to ${file}: ${written} of ${data.length} bytes`);
  } finally {
    fs.closeSync(fd);
  }
}

export class SysfsIo {
  private readonly failureLog: RateLimitedLog;

  constructor(
    private readonly files: LedFileSystem,
    readonly counters: Counters,
    readonly log: Logger,
  ) {
    this.failureLog = new RateLimitedLog(log);
  }

  exists(file: string): boolean {
    return this.files.exists(file);
  }

  /** Returns the trimmed content, or undefined after a counted failure. */
  read(file: string): string | undefined {
    try {
      return this.files.readFile(file).trim();
    } catch (err) {
      this.counters.add("leds.read_failed");
      this.failureLog.warn(`read:${file}`, { file, err }, "reading LED attribute failed");
      return undefined;
    }
  }

  /** Returns whether the write succeeded. A failure is counted in leds.write_failed. */
  write(file: string, value: string): boolean {
    try {
      this.files.writeFile(file, value);
      this.counters.add("leds.writes");
      return true;
    } catch (err) {
      this.counters.add("leds.write_failed");
      this.failureLog.warn(`write:${file}`, { file, value, err }, "writing LED attribute failed");
      return false;
    }
  }
}
