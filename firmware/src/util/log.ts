// Structured logging for every component.
//
// One pino logger per process, one child per component ("nms", "tunnel", ...).
// Field vocabulary, so logs can be searched across components:
//   node      node id (decimal)            fqdn      a member's FQDN
//   virtualIP a member's virtual IPv4      endpoint  "address:port" of a UDP peer
//   peer      the other end's node id      session   a local session index (hex)
//   reason    a stable drop/error code     err       an Error (pino serializes it)
// Secrets (private keys, session keys, provisioning tokens) are never logged.
import pino from "pino";

export type Logger = pino.Logger;

const level = process.env.CYPHONIC_LOG_LEVEL ?? "info";

// Logs go to stderr, so command output on stdout (admin, status) stays clean
// for scripts; systemd's journal captures both streams.
const root: Logger = pino(
  {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  },
  pino.destination({ fd: 2, sync: true }),
);

/** Lowers the verbosity of short-lived commands, unless CYPHONIC_LOG_LEVEL sets another level. */
export function setDefaultLogLevel(defaultLevel: pino.Level): void {
  if (!process.env.CYPHONIC_LOG_LEVEL) root.level = defaultLevel;
}

export function logger(component: string, fields: Record<string, unknown> = {}): Logger {
  return root.child({ component, ...fields });
}

/**
 * Lets one log line per key through per interval and counts the ones it held
 * back, so a flood of bad packets costs a counter increment, not a write.
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
    private readonly maxKeys = 4096,
  ) {}

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    if (!entry && this.last.size >= this.maxKeys) this.last.clear();
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(key, { at: now, suppressed: 0 });
    this.log.warn(suppressed ? { ...fields, suppressed } : fields, message);
  }
}
