// Runs the `nft` command of nftables in the caller's network namespace.
import { CommandError, runCommand } from "../../util/system-command.js";

const DEFAULT_NFT_TIMEOUT_MS = 10_000;

/** An `nft` invocation that could not start, timed out or exited with a non-zero status. */
export class NftCommandError extends CommandError {
  override name = "NftCommandError";
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
  return runCommand("nft", args, {
    timeoutMs: options.timeoutMs ?? DEFAULT_NFT_TIMEOUT_MS,
    input: options.input,
    debianPackage: "nftables",
    makeError: (command, stderr, exitCode, message, cause) => new NftCommandError(command, stderr, exitCode, message, { cause }),
  });
}
