// The address families this host can use, read from its interfaces. A node
// on an IPv6-only network must pick a service's IPv6 endpoint, and one on an
// IPv4-only network its IPv4 endpoint.
import os from "node:os";
import { Endpoint, endpointFamily, isRoutableUnicast } from "../protocol/endpoint.js";

/** Families of the routable unicast addresses on this host's interfaces, skipping the overlay's own. */
export function usableFamilies(excludeInterfaces: string[] = []): Set<4 | 6> {
  const families = new Set<4 | 6>();
  for (const [name, addresses] of Object.entries(os.networkInterfaces())) {
    if (excludeInterfaces.includes(name)) continue;
    for (const a of addresses ?? []) {
      if (a.internal || !isRoutableUnicast(a.address)) continue;
      families.add(a.family === "IPv6" ? 6 : 4);
    }
  }
  return families;
}

/** Returns the first endpoint of a family this host has an address in, or the first one at all when none matches. */
export function pickEndpoint(endpoints: Endpoint[], excludeInterfaces: string[] = []): Endpoint {
  const families = usableFamilies(excludeInterfaces);
  return endpoints.find((e) => families.has(endpointFamily(e))) ?? endpoints[0]!;
}

/** Returns a text that changes whenever this host's underlay addresses change; it is cheap enough to poll. */
export function underlaySignature(excludeInterfaces: string[] = []): string {
  const parts: string[] = [];
  for (const [name, addresses] of Object.entries(os.networkInterfaces())) {
    if (excludeInterfaces.includes(name)) continue;
    for (const a of addresses ?? []) {
      if (!a.internal && isRoutableUnicast(a.address)) parts.push(`${name}/${a.address}`);
    }
  }
  return parts.sort().join(" ");
}
