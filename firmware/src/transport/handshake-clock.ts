// Timestamps for handshake initiations. A responder drops an initiation not
// newer than the last one it accepted from the same key, so the values must
// grow across restarts too, even on a device without a real-time clock that
// boots with its clock behind (a Raspberry Pi before NTP). The high-water
// mark is saved in the state directory, and a restart continues above it.
import fs from "node:fs";
import { writeFileAtomic } from "../util/files.js";
import { logger } from "../util/log.js";

/** Added to the saved mark at start: covers values handed out after the last save. */
const RESTART_MARGIN_MS = 120_000n;
/** How often the mark is saved; shorter than the margin, so no value repeats. */
const SAVE_INTERVAL_MS = 60_000;

export class HandshakeClock {
  private last = 0n;
  private saved = 0n;
  private timer: NodeJS.Timeout | null = null;

  /** With a file, the clock resumes above the mark saved there and saves it periodically. */
  constructor(private readonly file: string | null = null) {
    if (!file || !fs.existsSync(file)) return;
    const text = fs.readFileSync(file, "utf8").trim();
    if (/^\d{1,20}$/.test(text)) this.last = BigInt(text) + RESTART_MARGIN_MS;
    else logger("clock").warn({ file }, "invalid handshake clock file ignored; peers may drop handshakes until the wall clock passes their last one");
  }

  /** Returns a value greater than every value returned before, following the wall clock when it is ahead. */
  next(): bigint {
    const now = BigInt(Date.now());
    this.last = now > this.last ? now : this.last + 1n;
    return this.last;
  }

  start(): void {
    if (!this.file || this.timer) return;
    this.save();
    this.timer = setInterval(() => this.save(), SAVE_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.save();
  }

  private save(): void {
    if (!this.file || this.last === this.saved) return;
    const value = this.next();
    writeFileAtomic(this.file, `${value}\n`, 0o600);
    this.saved = value;
  }
}
