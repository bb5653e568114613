// Reads and writes kernel parameters through /proc/sys. The net.* entries
// belong to the network namespace of the process that opens them, so these
// calls act on the caller's namespace, like `ip` and `nft`.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";

const PROC_SYS_DIRECTORY = "/proc/sys";

/** A failed read or write of one /proc/sys entry. */
export class SysctlError extends Error {
  override readonly name = "SysctlError";

  constructor(
    /** File path, for example /proc/sys/net/ipv4/conf/eth1/proxy_arp. */
    readonly path: string,
    /** errno name such as ENOENT, or "unknown". */
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Returns the /proc/sys path of a parameter given as path segments, for
 * example ["net", "ipv4", "conf", "eth0.10", "rp_filter"]. Segments keep
 * interface names with dots intact, which the dotted sysctl(8) form would split.
 */
export function sysctlPath(segments: readonly string[]): string {
  return path.join(PROC_SYS_DIRECTORY, ...segments);
}

/** Returns the parameter's value without the trailing newline. Rejects with SysctlError. */
export async function readSysctl(segments: readonly string[]): Promise<string> {
  const file = sysctlPath(segments);
  try {
    return (await readFile(file, "utf8")).trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unknown";
    throw new SysctlError(file, code, `reading ${file} failed (${code})`, { cause: err });
  }
}

/** Writes the parameter's value. Rejects with SysctlError, for example EACCES when the process does not run as root. */
export async function writeSysctl(segments: readonly string[], value: string): Promise<void> {
  const file = sysctlPath(segments);
  try {
    await writeFile(file, `${value}\n`, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unknown";
    throw new SysctlError(file, code, `writing ${value} to ${file} failed (${code})`, { cause: err });
  }
}
