// Runs system tools (ip, nft) as child processes. They act on the caller's
// network namespace, because a child process inherits it.
import { execFile } from "node:child_process";

/** A command that could not start, timed out or exited with a non-zero status. */
export class CommandError extends Error {
  override name = "CommandError";

  constructor(
    /** The command line as a shell would show it, for example `ip link set dev cy0 up`. */
    readonly command: string,
    /** Standard error output, trimmed, or "" when the command could not start. */
    readonly stderr: string,
    /** Exit status, or null when the command could not start or was killed. */
    readonly exitCode: number | null,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface CommandOptions {
  timeoutMs: number;
  /** Text written to standard input, for example a ruleset for `nft -f -`. */
  input?: string;
  /** The Debian package to install when the binary is missing, for the error message. */
  debianPackage: string;
  /** Builds the error, so each tool keeps an error class of its own. */
  makeError: (command: string, stderr: string, exitCode: number | null, message: string, cause: unknown) => CommandError;
}

/** Runs `binary ARGS...` and resolves with its standard output; rejects with the error makeError builds. */
export function runCommand(binary: string, args: readonly string[], options: CommandOptions): Promise<string> {
  const command = [binary, ...args].join(" ");
  return new Promise((resolve, reject) => {
    const child = execFile(binary, args, { timeout: options.timeoutMs, encoding: "utf8" }, (err, stdout, stderr) => {
      if (!err) {
        resolve(stdout);
        return;
      }
      const errorOutput = stderr.trim();
      const fail = (out: string, exitCode: number | null, message: string) => reject(options.makeError(command, out, exitCode, message, err));
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        fail("", null, `${command} failed because the ${binary} command was not found in PATH. Install ${options.debianPackage}`);
      } else if (err.killed) {
        fail(errorOutput, null, `${command} timed out after ${options.timeoutMs} ms`);
      } else if (err.signal) {
        fail(errorOutput, null, `${command} was killed by ${err.signal}`);
      } else {
        const exitCode = typeof err.code === "number" ? err.code : null;
        fail(errorOutput, exitCode, `${command} failed with exit status ${exitCode ?? "unknown"}: ${errorOutput || err.message}`);
      }
    });
    // When the command exits before reading all input, the write fails with
    // EPIPE. The exit callback above reports that failure, so this one is dropped.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(options.input ?? "");
  });
}
