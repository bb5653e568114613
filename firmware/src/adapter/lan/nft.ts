// Runs the `nft` command of nftables. Like `ip`, it acts on the caller's
// network namespace because the child process inherits it.
import { execFile } from "node:child_process";

const NFT_COMMAND = "nft";
const DEFAULT_NFT_TIMEOUT_MS = 10_000;

/** An `nft` invocation that could not start, timed out or exited with a non-zero status. */
export class NftCommandError extends Error {
  override readonly name = "NftCommandError";

  constructor(
    /** The command line as a shell would show it, for example `nft -f -`. */
    readonly command: string,
    /** Standard error output of `nft`, trimmed, or "" when it could not start. */
    readonly stderr: string,
    /** Exit status, or null when `nft` could not start or was killed. */
    readonly exitCode: number | null,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface NftRunOptions {
  /** Text written to standard input, for example a ruleset for `nft -f -`. */
  input?: string;
  timeoutMs?: number;
}

/**
 * Runs `nft ARGS...` and resolves with its standard output. Rejects with
 * NftCommandError naming the command, exit status and stderr. For a ruleset
 * on standard input, nft's stderr names the failing line as /dev/stdin:LINE.
 */
export function runNft(args: readonly string[], options: NftRunOptions = {}): Promise<string> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_NFT_TIMEOUT_MS;
  const command = [NFT_COMMAND, ...args].join(" ");
  return new Promise((resolve, reject) => {
    const child = execFile(NFT_COMMAND, args, { timeout: timeoutMs, encoding: "utf8" }, (err, stdout, stderr) => {
      if (!err) {
        resolve(stdout);
        return;
      }
      const errorOutput = stderr.trim();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        reject(new NftCommandError(command, "", null, `${command} failed because the nft command was not found in PATH. Install nftables`, { cause: err }));
        return;
      }
      if (err.killed) {
        reject(new NftCommandError(command, errorOutput, null, `${command} timed out after ${timeoutMs} ms`, { cause: err }));
        return;
      }
      if (err.signal) {
        reject(new NftCommandError(command, errorOutput, null, `${command} was killed by ${err.signal}`, { cause: err }));
        return;
      }
      const exitCode = typeof err.code === "number" ? err.code : null;
      const detail = errorOutput || err.message;
      reject(new NftCommandError(command, errorOutput, exitCode, `${command} failed with exit status ${exitCode ?? "unknown"}: ${detail}`, { cause: err }));
    });
    // When nft exits before reading all input, the write fails with EPIPE.
    // The exit callback above reports that failure, so this error is dropped.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(options.input ?? "");
  });
}
