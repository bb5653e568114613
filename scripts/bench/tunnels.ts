// The reference tunnels, from their Debian packages, between the same two
// lab hosts as CYPHONIC: "adapter" (behind the NAPT router nata) and "cn2"
// (on the internet segment). Their overlay addresses come from the RFC 2544
// benchmarking range 198.18.0.0/15, like the lab's underlay, and exist only
// inside the lab's namespaces. Every tunnel uses MTU 1420, CYPHONIC's.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { NamespaceProcess } from "../../test/lab/lab-process.js";
import { BenchLab, delay } from "./lab.js";

export const TUNNEL_MTU = 1420;
const WIREGUARD_PORT = 51820;
/** Directory of wireguard-go's UAPI sockets. It is the same in every network namespace, so interface names must be unique. */
const WIREGUARD_SOCKET_DIR = "/var/run/wireguard";
const READY_TIMEOUT_MS = 15_000;

export interface TunnelEnds {
  /** Overlay address of the client end (host "adapter") and of the server end (host "cn2"). */
  clientAddress: string;
  serverAddress: string;
  /** The tunnel's interface on cn2, which every tunnel packet crosses once. */
  serverInterface: string;
  processes: NamespaceProcess[];
}

/**
 * Starts wireguard-go in both hosts (userspace, kept in the foreground by
 * WG_PROCESS_FOREGROUND) and configures it with `wg`. The client end sits
 * behind NAPT, so it gets the server's underlay endpoint and a persistent
 * keep-alive. The server learns the client's endpoint from its handshake.
 */
export async function startWireguard(lab: BenchLab, dir: string): Promise<TunnelEnds> {
  const ends = [
    { host: "adapter", iface: `${lab.prefix}wga`, address: "198.19.1.1" },
    { host: "cn2", iface: `${lab.prefix}wgb`, address: "198.19.1.2" },
  ] as const;
  const keys = ends.map((end) => {
    const privateKey = execFileSync("wg", ["genkey"], { encoding: "utf8" }).trim();
    const publicKey = execFileSync("wg", ["pubkey"], { input: privateKey, encoding: "utf8" }).trim();
    const file = path.join(dir, `${end.iface}.key`);
    fs.writeFileSync(file, `${privateKey}\n`, { mode: 0o600 });
    return { file, publicKey };
  });
  const processes: NamespaceProcess[] = [];
  for (const end of ends) {
    const child = lab.spawn(end.host, ["wireguard-go", end.iface], { env: { WG_PROCESS_FOREGROUND: "1" }, logFile: path.join(dir, `${end.iface}.log`) });
    processes.push(child);
    await waitFor(() => fs.existsSync(path.join(WIREGUARD_SOCKET_DIR, `${end.iface}.sock`)), `wireguard-go ${end.iface} UAPI socket`);
  }
  const [client, server] = ends;
  await lab.run("cn2", ["wg", "set", server.iface, "private-key", keys[1]!.file, "listen-port", String(WIREGUARD_PORT), "peer", keys[0]!.publicKey, "allowed-ips", `${client.address}/32`]);
  await lab.run("adapter", [
    "wg", "set", client.iface, "private-key", keys[0]!.file,
    "peer", keys[1]!.publicKey, "allowed-ips", `${server.address}/32`, "endpoint", `${lab.info.cn2}:${WIREGUARD_PORT}`, "persistent-keepalive", "25",
  ]);
  for (const end of ends) {
    await lab.run(end.host, ["ip", "addr", "add", `${end.address}/24`, "dev", end.iface]);
    await lab.run(end.host, ["ip", "link", "set", end.iface, "mtu", String(TUNNEL_MTU), "up"]);
  }
  return { clientAddress: client.address, serverAddress: server.address, serverInterface: server.iface, processes };
}

export type NebulaCipher = "aes" | "chachapoly";

/**
 * Starts one nebula network with the given cipher: a CA and two host
 * certificates made with nebula-cert, the lighthouse on the server end (cn2,
 * reachable without NAPT) and a plain host on the client end. The firewall
 * admits everything, so it costs what its connection tracking costs.
 */
export async function startNebula(lab: BenchLab, dir: string, cipher: NebulaCipher, subnet: number, port: number): Promise<TunnelEnds> {
  const netDir = path.join(dir, `nebula-${cipher}`);
  fs.mkdirSync(netDir, { recursive: true, mode: 0o700 });
  const cert = (...args: string[]) => execFileSync("nebula-cert", args, { cwd: netDir, stdio: ["ignore", "ignore", "pipe"] });
  cert("ca", "-name", `bench ${cipher}`, "-out-crt", "ca.crt", "-out-key", "ca.key");
  const ends = [
    { host: "adapter", name: "client", iface: `${lab.prefix}n${subnet}a`, address: `198.19.${subnet}.1` },
    { host: "cn2", name: "server", iface: `${lab.prefix}n${subnet}b`, address: `198.19.${subnet}.2` },
  ] as const;
  const processes: NamespaceProcess[] = [];
  for (const end of ends) {
    cert("sign", "-ca-crt", "ca.crt", "-ca-key", "ca.key", "-name", end.name, "-ip", `${end.address}/24`, "-out-crt", `${end.name}.crt`, "-out-key", `${end.name}.key`);
    const isServer = end.host === "cn2";
    const config = {
      pki: { ca: path.join(netDir, "ca.crt"), cert: path.join(netDir, `${end.name}.crt`), key: path.join(netDir, `${end.name}.key`) },
      static_host_map: isServer ? {} : { [ends[1].address]: [`${lab.info.cn2}:${port}`] },
      lighthouse: isServer ? { am_lighthouse: true } : { am_lighthouse: false, hosts: [ends[1].address], interval: 60 },
      listen: { host: "0.0.0.0", port: isServer ? port : 0 },
      punchy: { punch: !isServer },
      cipher,
      tun: { dev: end.iface, mtu: TUNNEL_MTU },
      logging: { level: "warning" },
      firewall: {
        outbound: [{ port: "any", proto: "any", host: "any" }],
        inbound: [{ port: "any", proto: "any", host: "any" }],
      },
    };
    // YAML is a superset of JSON, so nebula reads this file as it is.
    const file = path.join(netDir, `${end.name}.yml`);
    fs.writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
    const child = lab.spawn(end.host, ["nebula", "-config", file], { logFile: path.join(netDir, `${end.name}.log`) });
    processes.push(child);
    await waitForInterface(lab, end.host, end.iface);
  }
  return { clientAddress: ends[0].address, serverAddress: ends[1].address, serverInterface: ends[1].iface, processes };
}

async function waitForInterface(lab: BenchLab, host: string, iface: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const r = await lab.exec(host, ["ip", "-o", "addr", "show", "dev", iface]);
    if (r.code === 0 && r.stdout.includes("inet ")) return;
    if (Date.now() > deadline) throw new Error(`interface ${iface} in ${lab.ns(host)} got no address within ${READY_TIMEOUT_MS} ms`);
    await delay(200);
  }
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${READY_TIMEOUT_MS} ms waiting for ${what}`);
    await delay(100);
  }
}
