// `cyphonic node` runs the node daemon, and `cyphonic status` queries it.
import { parseArgs } from "node:util";
import { controlRequest } from "../util/control-socket.js";
import { AdapterDaemon } from "../adapter/adapter-daemon.js";
import { SystemdNotifier } from "../appliance/systemd-notify.js";
import { NodeConfig, NodeDaemon } from "../node/daemon.js";
import { NodeStatus, formatStatus } from "../node/status.js";
import { logger } from "../util/log.js";
import { UsageError, endpointOption, intOption, portOption, waitForSignal } from "./common.js";

const DEFAULT_CONTROL_SOCKET = "/run/cyphonic/node.sock";

export const NODE_USAGE = `cyphonic node --state DIR [options]
  --state DIR              identity and keys (created 0700)
  --token-file FILE        provisioning token, needed on first start only; deleted once used
  --port N                 UDP port for signaling and tunnels (default 7000, 0 = any)
  --tun NAME               TUN interface name (default cyph0)
  --control PATH           control socket (default ${DEFAULT_CONTROL_SOCKET})
  --dns-listen ADDR:PORT   resolver address, repeatable (default: the virtual IP, port 53)
  --dns-upstream ADDR:PORT resolver for non-overlay names (default: none, answered REFUSED)`;

export const STATUS_USAGE = `cyphonic status [--control PATH] [--json]`;

export const ADAPTER_USAGE = `cyphonic adapter --state DIR --lan IFACE [options]
  the node daemon's options, and:
  --lan IFACE              the NIC towards the general nodes (DHCP, DNS, forwarding)
  --lease-seconds N        DHCP lease time (default 3600)`;

/** Runs the node daemon, or with adapter set, the adapter (a node that also serves its LAN). */
export async function runNode(argv: string[], adapter = false): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      lan: { type: "string" },
      "lease-seconds": { type: "string" },
      state: { type: "string" },
      "token-file": { type: "string" },
      port: { type: "string" },
      tun: { type: "string" },
      control: { type: "string" },
      "dns-listen": { type: "string", multiple: true },
      "dns-upstream": { type: "string" },
    },
    strict: true,
  });
  const usage = adapter ? ADAPTER_USAGE : NODE_USAGE;
  if (!values.state) throw new UsageError("--state DIR is required", usage);
  if (!adapter && (values.lan || values["lease-seconds"])) throw new UsageError("--lan and --lease-seconds belong to `cyphonic adapter`", usage);
  if (adapter && !values.lan) throw new UsageError("--lan IFACE is required: the NIC the general nodes are plugged into", usage);
  const config: NodeConfig = {
    stateDir: values.state,
    tokenFile: values["token-file"] ?? null,
    port: portOption(values.port, 7000, "--port", true),
    tunName: values.tun ?? "cyph0",
    controlSocket: values.control ?? DEFAULT_CONTROL_SOCKET,
    dnsListen: values["dns-listen"]?.map((v) => endpointOption(v, "--dns-listen")) ?? "virtual-ip",
    dnsUpstream: values["dns-upstream"] ? endpointOption(values["dns-upstream"], "--dns-upstream") : null,
  };
  const leaseSeconds = intOption(values["lease-seconds"], 3600, "--lease-seconds", 10, 7 * 86_400);
  const daemon = adapter ? new AdapterDaemon({ ...config, lanInterface: values.lan!, leaseSeconds }) : new NodeDaemon(config);
  // Under systemd (Type=notify), the watchdog starts before the first start,
  // which may wait minutes for the cloud, and READY=1 follows a complete start.
  const notifier = SystemdNotifier.fromEnvironment();
  notifier.startWatchdog(() => true);
  await daemon.start();
  notifier.ready(`${adapter ? "adapter" : "node"} running`);
  const signal = await waitForSignal();
  logger("node").info({ signal }, "stopping");
  notifier.stopping();
  await daemon.stop();
  notifier.stopWatchdog();
}

export async function runStatus(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { control: { type: "string" }, json: { type: "boolean" } }, strict: true });
  const status = (await controlRequest(values.control ?? DEFAULT_CONTROL_SOCKET, { command: "status" })) as NodeStatus;
  process.stdout.write((values.json ? JSON.stringify(status, null, 2) : formatStatus(status)) + "\n");
}
