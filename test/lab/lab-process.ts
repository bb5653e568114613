// A process started inside a lab namespace and tracked until the lab goes down.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";

export interface LabProcess {
  readonly pid: number;
  /** Sends `signal` (default SIGTERM) to the process group, then SIGKILL when the process still runs 2 s later. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Resolves with the first output line (stdout or stderr) matching `re`, including lines printed before the call. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string>;
  /** Combined stdout and stderr so far, in arrival order. */
  output(): string;
  /** Exit code, or null when a signal ended the process. */
  readonly exited: Promise<number | null>;
}

export interface LabSpawnOptions {
  /** File that receives a copy of the output, appended to any existing content. */
  logFile?: string;
  /** Variables added to this process's environment. */
  env?: Record<string, string>;
  cwd?: string;
}

const KILL_GRACE_MS = 2000;
const OUTPUT_TAIL_CHARS = 2000;

interface LineWaiter {
  re: RegExp;
  resolve: (line: string) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Runs `argv` inside network namespace `namespace` through `ip netns exec`.
 * The child leads its own process group (detached), so kill() reaches the
 * processes it forks as well.
 */
export class NamespaceProcess implements LabProcess {
  readonly pid: number;
  readonly exited: Promise<number | null>;
  /** Resolves once the process has exited and both output pipes are drained. */
  readonly closed: Promise<void>;
  private readonly child: ChildProcess;
  private stdoutText = "";
  private stderrText = "";
  private readonly log: WriteStream | undefined;
  private text = "";
  private pending = "";
  private readonly lines: string[] = [];
  private waiters: LineWaiter[] = [];
  private pipesClosed = false;
  private hasExited = false;
  private groupKilledAfterExit = false;

  constructor(
    readonly namespace: string,
    readonly argv: readonly string[],
    options: LabSpawnOptions = {},
  ) {
    this.child = spawn("ip", ["netns", "exec", namespace, ...argv], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
    });
    if (this.child.pid === undefined) {
      // The spawn error arrives as an event later, and an unhandled one would crash the test process.
      this.child.once("error", () => undefined);
      throw new Error(`failed to start 'ip netns exec ${namespace} ${argv.join(" ")}': no process id`);
    }
    this.pid = this.child.pid;
    this.log = options.logFile === undefined ? undefined : createWriteStream(options.logFile, { flags: "a" });
    // A log file that cannot be written must not crash the test process, so the error goes into the output.
    this.log?.on("error", (error) => {
      this.text += `lab-process: failed to write log file ${options.logFile}: ${error.message}\n`;
    });

    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code) => {
        this.hasExited = true;
        resolve(code);
      });
      // A spawn error means the process never ran, so there is no exit code.
      this.child.once("error", (error) => {
        this.append(`lab-process: ${error.message}\n`);
        this.hasExited = true;
        resolve(null);
      });
    });
    // setEncoding decodes across chunk boundaries, so a multi-byte character split between reads stays whole.
    this.child.stdout?.setEncoding("utf8");
    this.child.stderr?.setEncoding("utf8");
    this.child.stdout?.on("data", (text: string) => {
      this.stdoutText += text;
      this.append(text);
    });
    this.child.stderr?.on("data", (text: string) => {
      this.stderrText += text;
      this.append(text);
    });
    // "close" fires after both pipes are drained, so no output line is lost
    // when waiters are rejected for a process that ended. A spawn error ends
    // the process without a "close" event.
    this.closed = new Promise((resolve) => {
      this.child.once("close", () => {
        this.onClose();
        resolve();
      });
      this.child.once("error", () => {
        this.onClose();
        resolve();
      });
    });
  }

  /** The signal that ended the process, or null while it runs or when it exited normally. */
  get exitSignal(): NodeJS.Signals | null {
    return this.child.signalCode;
  }

  get stdout(): string {
    return this.stdoutText;
  }

  get stderr(): string {
    return this.stderrText;
  }

  get running(): boolean {
    return !this.hasExited;
  }

  output(): string {
    return this.text;
  }

  waitForLine(re: RegExp, timeoutMs: number): Promise<string> {
    const found = this.lines.find((line) => matches(re, line));
    if (found !== undefined) {
      return Promise.resolve(found);
    }
    if (this.pipesClosed) {
      return Promise.reject(this.endedError(re));
    }
    return new Promise((resolve, reject) => {
      const waiter: LineWaiter = {
        re,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.removeWaiter(waiter);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from ${this.describe()}${this.tail()}`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  async kill(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.hasExited) {
      this.killStragglers();
      return;
    }
    this.signalGroup(signal);
    const stopped = await Promise.race([this.exited.then(() => true), delay(KILL_GRACE_MS).then(() => false)]);
    // Members of the group other than the leader may outlive a SIGTERM, so
    // the group always gets a SIGKILL at the end.
    this.killStragglers();
    if (!stopped) {
      await this.exited;
    }
  }

  /** Sends SIGKILL to the process group without waiting, so a process 'exit' handler can call it. */
  killGroupSync(): void {
    this.killStragglers();
  }

  // Once the leader is reaped its PID may be reused after the group empties,
  // so the group gets SIGKILL once after exit and never again.
  private killStragglers(): void {
    if (this.groupKilledAfterExit) {
      return;
    }
    if (this.hasExited) {
      this.groupKilledAfterExit = true;
    }
    this.signalGroup("SIGKILL");
  }

  private signalGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch (error) {
      // ESRCH: the group is already gone.
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") {
        throw error;
      }
    }
  }

  private append(chunk: string): void {
    this.text += chunk;
    this.log?.write(chunk);
    this.pending += chunk;
    const parts = this.pending.split("\n");
    this.pending = parts.pop() ?? "";
    for (const line of parts) {
      this.addLine(line);
    }
  }

  private addLine(line: string): void {
    this.lines.push(line);
    for (const waiter of [...this.waiters]) {
      if (matches(waiter.re, line)) {
        this.removeWaiter(waiter);
        waiter.resolve(line);
      }
    }
  }

  private onClose(): void {
    if (this.pipesClosed) {
      return;
    }
    this.pipesClosed = true;
    if (this.pending !== "") {
      this.addLine(this.pending);
      this.pending = "";
    }
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(this.endedError(waiter.re));
    }
    this.waiters = [];
    this.log?.end();
  }

  private removeWaiter(waiter: LineWaiter): void {
    clearTimeout(waiter.timer);
    this.waiters = this.waiters.filter((other) => other !== waiter);
  }

  private endedError(re: RegExp): Error {
    return new Error(`${this.describe()} ended before printing a line matching ${re}${this.tail()}`);
  }

  private describe(): string {
    return `'${this.argv.join(" ")}' (pid ${this.pid}) in ${this.namespace}`;
  }

  private tail(): string {
    return `\n--- last output ---\n${this.text.slice(-OUTPUT_TAIL_CHARS)}`;
  }
}

// RegExp.test advances lastIndex on /g and /y patterns, so it is reset first.
function matches(re: RegExp, line: string): boolean {
  re.lastIndex = 0;
  return re.test(line);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
