// Interface configuration through the `ip` command of iproute2, which sends
// the rtnetlink requests for us. Each call runs in the caller's network
// namespace because the child process inherits it.
import net from "node:net";
import { CommandError, runCommand } from "../util/system-command.js";

const DEFAULT_IP_TIMEOUT_MS = 5_000;

/** An `ip` invocation that could not start, timed out or exited with a non-zero status. */
export class IpCommandError extends CommandError {
  override name = "IpCommandError";
}

/** An IPv4 interface address in CIDR notation, for example 100.64.0.2/16. */
export interface IPv4Cidr {
  address: string;
  prefixLength: number;
}

/**
 * Parses "a.b.c.d/n". Returns null unless the address is a dotted-quad IPv4
 * address and n is an integer from 1 to 32. Prefix length 0 is rejected
 * because the kernel would install a default route through the interface.
 */
export function parseIPv4Cidr(cidr: string): IPv4Cidr | null {
  const match = /^([0-9.]+)\/([0-9]{1,2})$/.exec(cidr);
  if (!match) return null;
  const address = match[1] as string;
  const prefixLength = Number(match[2]);
  if (!net.isIPv4(address) || prefixLength < 1 || prefixLength > 32) return null;
  return { address, prefixLength };
}

/**
 * Runs `ip ARGS...` and resolves with its standard output.
 * Rejects with IpCommandError naming the command, exit status and stderr.
 */
export function runIp(args: readonly string[], timeoutMs = DEFAULT_IP_TIMEOUT_MS): Promise<string> {
  return runCommand("ip", args, {
    timeoutMs,
    debianPackage: "iproute2",
    makeError: (command, stderr, exitCode, message, cause) => new IpCommandError(command, stderr, exitCode, message, { cause }),
  });
}

/**
 * Sets the MTU, assigns the IPv4 address and brings the interface up, in that
 * order. Once the link is up, the kernel installs the route to the address's
 * prefix through this interface, so no route is added here. A /32 address
 * gets no prefix route.
 */
export async function configureIPv4Interface(name: string, mtuBytes: number, cidr: IPv4Cidr): Promise<void> {
  await runIp(["link", "set", "dev", name, "mtu", String(mtuBytes)]);
  await runIp(["address", "add", `${cidr.address}/${cidr.prefixLength}`, "dev", name]);
  await runIp(["link", "set", "dev", name, "up"]);
}
