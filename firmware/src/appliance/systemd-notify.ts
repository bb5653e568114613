// Readiness, status and watchdog notifications for units with Type=notify and
// WatchdogSec. The sd_notify(3) protocol sends newline-separated VAR=value
// assignments as one datagram to the AF_UNIX socket named in $NOTIFY_SOCKET.
// Outside systemd the variable is unset and every method does nothing.
import { Counters } from "../util/counters.js";
import { logger, RateLimitedLog, type Logger } from "../util/log.js";
import { encodeUnixSocketAddress, sendUnixDatagram, UnixDatagramError, type UnixSocketAddress } from "./unix-datagram.js";

// systemd (src/core/manager.c) reads a notification into a buffer of
// NOTIFY_BUFFER_MAX = PIPE_BUF (4096) bytes and ignores a longer datagram
// whole, so STATUS text is cut to fit.
const MAX_MESSAGE_BYTES = 4096;
const STATUS_PREFIX = "STATUS=";

// Node.js runs a timer with a longer delay after 1 ms instead, with a
// TimeoutOverflowWarning, so longer watchdog intervals are capped.
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export interface SystemdNotifierOptions {
  /** Counters to add to. A new set is created when omitted. */
  counters?: Counters;
}

/**
 * Sender of sd_notify(3) messages to the service manager. Send failures are
 * counted and logged with a rate limit, and never thrown, so a daemon keeps
 * running when the socket is missing or refuses the message.
 *
 * Counters: systemd.notify.sent, systemd.notify.failed.<reason> (the errno name
 * in lower case, invalid_address or libc_unavailable),
 * systemd.notify.status_truncated and systemd.watchdog.unhealthy.
 */
export class SystemdNotifier {
  /** Whether $NOTIFY_SOCKET is set, so that messages are sent. */
  readonly enabled: boolean;
  /**
   * Interval at which to send WATCHDOG=1, in ms: half of WATCHDOG_USEC, as
   * sd_watchdog_enabled(3) recommends. Null when the notifier is disabled,
   * WATCHDOG_USEC is unset or invalid, or WATCHDOG_PID names another process.
   */
  readonly watchdogIntervalMs: number | null;
  readonly counters: Counters;
  private readonly log: Logger;
  private readonly failureLog: RateLimitedLog;
  private readonly address: UnixSocketAddress | undefined;
  private readonly addressError: UnixDatagramError | undefined;
  private watchdogTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly socketName: string | undefined,
    env: NodeJS.ProcessEnv,
    options: SystemdNotifierOptions,
  ) {
    this.counters = options.counters ?? new Counters();
    this.log = logger("systemd");
    this.failureLog = new RateLimitedLog(this.log);
    this.enabled = socketName !== undefined;
    if (socketName !== undefined) {
      // An invalid address is counted at each send rather than thrown here, so
      // a daemon started with a bad $NOTIFY_SOCKET still runs.
      try {
        this.address = encodeUnixSocketAddress(socketName);
      } catch (err) {
        if (!(err instanceof UnixDatagramError)) throw err;
        this.addressError = err;
      }
    }
    this.watchdogIntervalMs = this.enabled ? watchdogIntervalFromEnvironment(env, this.log) : null;
  }

  /**
   * Creates a notifier for the socket in env.NOTIFY_SOCKET. Returns a disabled
   * notifier when the variable is unset or empty, which is the case outside systemd.
   */
  static fromEnvironment(env: NodeJS.ProcessEnv = process.env, options: SystemdNotifierOptions = {}): SystemdNotifier {
    const socketName = env.NOTIFY_SOCKET;
    return new SystemdNotifier(socketName === undefined || socketName === "" ? undefined : socketName, env, options);
  }

  /** Sends READY=1, and STATUS with `status` when given. With Type=notify, systemd starts the units ordered after this one only then. */
  ready(status?: string): void {
    // NOTE: a failed send is not retried. When the manager's queue is full
    // (EAGAIN), systemd receives READY=1 only if ready() is called again.
    const ready = "READY=1";
    if (status === undefined) {
      this.send(ready);
      return;
    }
    this.send(`${ready}\n${this.statusAssignment(status, ready.length + 1)}`);
  }

  /** Sends STATUS=`text`, which systemctl status shows. Line breaks and NUL bytes become spaces. */
  status(text: string): void {
    this.send(this.statusAssignment(text, 0));
  }

  /** Sends STOPPING=1, which reports to systemd that the daemon began its shutdown. */
  stopping(): void {
    this.send("STOPPING=1");
  }

  /** Sends WATCHDOG=1, which restarts the countdown of WatchdogSec. */
  watchdog(): void {
    this.send("WATCHDOG=1");
  }

  /**
   * Starts a timer that calls `isHealthy` every watchdogIntervalMs and sends
   * WATCHDOG=1 only when it returns true. A stuck event loop or a failing check
   * stops the messages, so systemd kills and restarts the daemon after
   * WatchdogSec. The first check runs at once. A check that throws counts as
   * unhealthy. The timer does not keep the process alive, and a second call
   * replaces the first. Does nothing when watchdogIntervalMs is null.
   */
  startWatchdog(isHealthy: () => boolean): void {
    this.stopWatchdog();
    const intervalMs = this.watchdogIntervalMs;
    if (intervalMs === null) return;
    this.log.info({ intervalMs }, "systemd watchdog started");
    this.sendWatchdogIfHealthy(isHealthy);
    this.watchdogTimer = setInterval(() => this.sendWatchdogIfHealthy(isHealthy), intervalMs);
    this.watchdogTimer.unref();
  }

  stopWatchdog(): void {
    if (this.watchdogTimer === undefined) return;
    clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
    this.log.info("systemd watchdog stopped");
  }

  private sendWatchdogIfHealthy(isHealthy: () => boolean): void {
    let healthy: boolean;
    let checkError: unknown;
    try {
      healthy = isHealthy() === true;
    } catch (err) {
      healthy = false;
      checkError = err;
    }
    if (healthy) {
      this.watchdog();
      return;
    }
    this.counters.add("systemd.watchdog.unhealthy");
    const fields = checkError === undefined ? {} : { err: checkError };
    this.failureLog.warn(
      "watchdog.unhealthy",
      fields,
      "health check failed, so WATCHDOG=1 was not sent. systemd restarts the daemon when no WATCHDOG=1 arrives within WatchdogSec",
    );
  }

  /** Builds STATUS=`text` with line breaks and NUL bytes as spaces, cut so the message fits beside `otherBytes`. */
  private statusAssignment(text: string, otherBytes: number): string {
    // systemd splits assignments at "\n" and "\r", and ignores a message that contains NUL.
    const value = text.replace(/[\r\n\0]/g, " ");
    const truncated = truncateUtf8(value, MAX_MESSAGE_BYTES - otherBytes - STATUS_PREFIX.length);
    if (truncated.length !== value.length) this.counters.add("systemd.notify.status_truncated");
    return STATUS_PREFIX + truncated;
  }

  private send(message: string): void {
    if (!this.enabled) return;
    try {
      if (this.addressError) throw this.addressError;
      if (!this.address) return;
      sendUnixDatagram(this.address, Buffer.from(message, "utf8"));
      this.counters.add("systemd.notify.sent");
    } catch (err) {
      const reason = failureReason(err);
      this.counters.add(`systemd.notify.failed.${reason}`);
      // The first assignment (READY=1, WATCHDOG=1, ...) names the message without the status text.
      const assignment = message.split("\n", 1)[0];
      this.failureLog.warn(`notify.${reason}`, { reason, socket: this.socketName, assignment, err }, "sending a notification to systemd failed");
    }
  }
}

/** Parses WATCHDOG_USEC and WATCHDOG_PID as sd_watchdog_enabled(3) does, and returns half the timeout in ms or null. */
function watchdogIntervalFromEnvironment(env: NodeJS.ProcessEnv, log: Logger): number | null {
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || usecText === "") return null;

  const pidText = env.WATCHDOG_PID;
  if (pidText !== undefined && pidText !== "") {
    if (!/^[1-9][0-9]*$/.test(pidText)) {
      log.warn({ value: pidText }, "invalid WATCHDOG_PID, so no WATCHDOG=1 is sent. Expected a process id");
      return null;
    }
    // The manager sets WATCHDOG_PID to its main process, so a child process that
    // inherited the environment must not send watchdog messages.
    if (Number(pidText) !== process.pid) return null;
  }

  const usec = /^[0-9]+$/.test(usecText) ? Number(usecText) : NaN;
  if (!Number.isSafeInteger(usec) || usec === 0) {
    log.warn({ value: usecText }, "invalid WATCHDOG_USEC, so no WATCHDOG=1 is sent. Expected a positive number of microseconds");
    return null;
  }
  const intervalMs = Math.floor(usec / 2 / 1000);
  return Math.min(Math.max(intervalMs, 1), MAX_TIMER_DELAY_MS);
}

/** Returns the longest prefix of `text` with at most `maxBytes` UTF-8 bytes, without splitting a character. */
function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let end = Math.max(maxBytes, 0);
  // Continuation bytes are 10xxxxxx, so step back to the first byte of the cut character.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.toString("utf8", 0, end);
}

function failureReason(err: unknown): string {
  if (!(err instanceof UnixDatagramError)) return "error";
  return err.code.toLowerCase().replace(/[^a-z0-9]+/g, "_");
}
