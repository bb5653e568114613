// Addresses, routes and neighbor entries that the LAN setup owns on the LAN
// interface, all through `ip` in the caller's network namespace.
//
// Routes and neighbor entries carry routing protocol 202, a number that
// Linux's uapi rtnetlink.h and iproute2's rt_protos (both 6.1) leave
// unassigned. apply() and remove() find the entries of an earlier run by it,
// also when that run crashed and left no record.
import { runIp } from "../../node/netlink-ip.js";

const ROUTE_PROTOCOL = "202";

interface NeighborEntry {
  dst?: unknown;
  lladdr?: unknown;
  protocol?: unknown;
}

interface AddressListing {
  addr_info?: { local?: unknown; prefixlen?: unknown }[];
}

function parseJsonArray<T>(command: string, output: string): T[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(output);
  } catch (err) {
    throw new Error(`${command} printed invalid JSON: ${output.slice(0, 200)}`, { cause: err });
  }
  if (!Array.isArray(parsed)) {
    throw new Error(`${command} printed ${output.slice(0, 200)}, expected a JSON array`);
  }
  return parsed as T[];
}

/** Runs `ip -N -j ARGS...` (numeric protocol values, JSON output) and returns the parsed array. */
async function listIp<T>(args: readonly string[]): Promise<T[]> {
  const fullArgs = ["-N", "-j", ...args];
  return parseJsonArray<T>(`ip ${fullArgs.join(" ")}`, await runIp(fullArgs));
}

/**
 * Assigns the adapter's virtual IP to the LAN interface as a /32, so general
 * nodes reach DHCP, DNS and ICMP on it and the kernel replies to ARP requests for it.
 * The /32 adds no prefix route, so the overlay prefix stays routed to the TUN device.
 * `replace` succeeds when the address exists.
 */
export async function addAdapterAddress(lanInterface: string, adapterVirtualIP: string): Promise<void> {
  await runIp(["address", "replace", `${adapterVirtualIP}/32`, "dev", lanInterface]);
}

/** Deletes the /32 virtual IP from the LAN interface. Does nothing when it is not assigned. */
export async function deleteAdapterAddress(lanInterface: string, adapterVirtualIP: string): Promise<void> {
  const links = await listIp<AddressListing>(["-4", "address", "show", "dev", lanInterface, "to", `${adapterVirtualIP}/32`]);
  const assigned = links.some((link) => (link.addr_info ?? []).some((info) => info.local === adapterVirtualIP && info.prefixlen === 32));
  if (!assigned) return;
  await runIp(["address", "del", `${adapterVirtualIP}/32`, "dev", lanInterface]);
}

/**
 * Routes `virtualIP`/32 out of the LAN interface, so replies that arrive on
 * the TUN device reach the general node. The more specific route wins over
 * the overlay prefix route on the TUN device. `replace` succeeds when the route exists.
 */
export async function addHostRoute(lanInterface: string, virtualIP: string): Promise<void> {
  await runIp(["route", "replace", `${virtualIP}/32`, "dev", lanInterface, "proto", ROUTE_PROTOCOL, "scope", "link"]);
}

/** Deletes the /32 route of `virtualIP` from the LAN interface. Does nothing when it does not exist. */
export async function deleteHostRoute(lanInterface: string, virtualIP: string): Promise<void> {
  const routes = await listIp<unknown>(["route", "show", "exact", `${virtualIP}/32`, "dev", lanInterface, "proto", ROUTE_PROTOCOL]);
  if (routes.length === 0) return;
  await runIp(["route", "del", `${virtualIP}/32`, "dev", lanInterface, "proto", ROUTE_PROTOCOL]);
}

/** Deletes every route with the setup's protocol on the LAN interface. */
export async function flushHostRoutes(lanInterface: string): Promise<void> {
  await runIp(["route", "flush", "dev", lanInterface, "proto", ROUTE_PROTOCOL]);
}

/**
 * Pins `virtualIP` to `mac` with a permanent neighbor entry. The kernel does
 * not let received ARP overwrite a permanent entry, so a host that claims
 * the same IP with another MAC cannot divert replies meant for the leased node.
 */
export async function addStaticNeighbor(lanInterface: string, virtualIP: string, mac: string): Promise<void> {
  await runIp(["neigh", "replace", virtualIP, "lladdr", mac, "dev", lanInterface, "nud", "permanent", "proto", ROUTE_PROTOCOL]);
}

/**
 * Deletes the permanent entry of `virtualIP` when it points to `mac` and
 * carries the setup's protocol, so revoking an old lease keeps the entry of
 * a newer lease for the same IP. Returns whether an entry was deleted.
 */
export async function deleteStaticNeighbor(lanInterface: string, virtualIP: string, mac: string): Promise<boolean> {
  const entries = await listIp<NeighborEntry>(["neigh", "show", "to", virtualIP, "dev", lanInterface, "nud", "permanent"]);
  const owned = entries.some((entry) => entry.dst === virtualIP && entry.lladdr === mac && entry.protocol === ROUTE_PROTOCOL);
  if (!owned) return false;
  await runIp(["neigh", "del", virtualIP, "dev", lanInterface]);
  return true;
}

/** Deletes every permanent neighbor entry with the setup's protocol on the LAN interface. */
export async function flushStaticNeighbors(lanInterface: string): Promise<void> {
  const entries = await listIp<NeighborEntry>(["neigh", "show", "dev", lanInterface, "nud", "permanent"]);
  for (const entry of entries) {
    if (entry.protocol !== ROUTE_PROTOCOL || typeof entry.dst !== "string") continue;
    await runIp(["neigh", "del", entry.dst, "dev", lanInterface]);
  }
}
