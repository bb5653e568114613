// Configuration of the cloud services, from command-line flags, validated.
import net from "node:net";
import { z } from "zod";

export const DEFAULT_PORTS = { as: 7400, nms: 7401, trs: 7402 } as const;
export const DEFAULT_OVERLAY_DOMAIN = "cyphonic.internal";
export const DEFAULT_POOL = "100.64.0.0/16";

export const overlayDomainSchema = z
  .string()
  .max(200, "overlay domain must leave room for node names within 253 bytes")
  .regex(/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "overlay domain must be lower-case DNS labels, such as cyphonic.internal");

export const poolSchema = z
  .string()
  .regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/, "pool must be an IPv4 CIDR such as 100.64.0.0/16")
  .refine((cidr) => {
    const [address, prefix] = cidr.split("/");
    return net.isIPv4(address!) && Number(prefix) >= 8 && Number(prefix) <= 30;
  }, "pool must be an IPv4 CIDR with a prefix length from 8 to 30");

export const cloudConfigSchema = z.object({
  stateDir: z.string().min(1, "state directory is required (--state DIR)"),
  /** Addresses nodes use to reach the services, one per family, in order of preference; sent to nodes in their configuration. */
  advertise: z
    .array(z.string().refine((a) => net.isIP(a) !== 0, "advertise address must be an IPv4 or IPv6 address (--advertise ADDR)"))
    .min(1, "at least one --advertise address is required"),
  /** Address to bind; defaults to all addresses. */
  bind: z.string().refine((a) => net.isIP(a) !== 0, "bind address must be an IP address").optional(),
  ports: z.object({
    as: z.number().int().min(1).max(65535),
    nms: z.number().int().min(1).max(65535),
    trs: z.number().int().min(1).max(65535),
  }),
  overlayDomain: overlayDomainSchema,
  pool: poolSchema,
  keepaliveIntervalMs: z.number().int().min(1000).max(60_000),
});

export type CloudConfig = z.infer<typeof cloudConfigSchema>;

export function databasePath(stateDir: string): string {
  return `${stateDir}/cloud.db`;
}
