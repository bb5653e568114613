import net from "node:net";
import { Endpoint, parseEndpoint } from "../protocol/endpoint.js";
// Helpers shared by the subcommands.

/** A command-line mistake: printed with the command's usage, exit status 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

/** Ends the program with `status` and no further message, because the command has logged its reason already. */
export class ExitStatus extends Error {
  constructor(readonly status: number) {
    super(`exit status ${status}`);
    this.name = "ExitStatus";
  }
}

/** Parses a whole-number flag within [min, max]; absent gives the fallback. */
export function intOption(value: string | undefined, fallback: number, flag: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`, "");
  }
  return n;
}

export function portOption(value: string | undefined, fallback: number, flag: string, allowZero = false): number {
  return intOption(value, fallback, flag, allowZero ? 0 : 1, 65535);
}

/** Parses an ADDRESS:PORT flag (a bare address takes defaultPort when given), turning a parse error into a usage error. */
export function endpointOption(value: string, flag: string, defaultPort?: number): Endpoint {
  if (defaultPort !== undefined && net.isIP(value)) return { address: value, port: defaultPort };
  try {
    return parseEndpoint(value);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`, "");
  }
}

export function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const done = (s: NodeJS.Signals) => resolve(s);
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
  });
}
