// `cyphonic node` runs the node daemon, and `cyphonic status` queries it.
import { parseArgs } from "node:util";
import { controlRequest } from "../util/control-socket.js";
import { SystemdNotifier } from "../appliance/systemd-notify.js";
import { NodeConfig, NodeDaemon } from "../node/daemon.js";
import { CRASH_HOOK_VARIABLE, installRedemptionCrashHook } from "../node/provision.js";
import { NodeStatus, formatStatus } from "../node/status.js";
import { logger } from "../util/log.js";
import { UsageError, endpointOption, portOption, waitForSignal } from "./common.js";

const DEFAULT_CONTROL_SOCKET = "/run/cyphonic/node.sock";

export const NODE_USAGE = `cyphonic node --state DIR [options]
  --state DIR              identity and keys (created 0700)
  --token-file FILE        provisioning token, needed on first start only; deleted once used
  --port N                 UDP port for signaling and tunnels (default 7000, 0 = any)
  --tun NAME               TUN interface name (default cyph0)
  --control PATH           control socket (default ${DEFAULT_CONTROL_SOCKET})
  --dns-listen ADDR:PORT   resolver address, repeatable (default: the virtual IP, port 53)
  --dns-upstream ADDR:PORT resolver for non-overlay names (default: none, answered REFUSED)
  --allow-crash-hook       for tests only: honour ${CRASH_HOOK_VARIABLE}=STEP, which kills
                           the process with SIGKILL right after that token redemption step`;

export const STATUS_USAGE = `cyphonic status [--control PATH] [--json]`;

/** Runs the node daemon until SIGINT or SIGTERM. `cyphonic adapter` has its own command in adapter-command.ts. */
export async function runNode(argv: string[]): Promise<void> {
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
      "allow-crash-hook": { type: "boolean" },
    },
    strict: true,
  });
  if (!values.state) throw new UsageError("--state DIR is required", NODE_USAGE);
  try {
    installRedemptionCrashHook(process.env[CRASH_HOOK_VARIABLE], values["allow-crash-hook"] ?? false, logger("node"));
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(err.message, NODE_USAGE);
    throw err;
  }
  if (values.lan || values["lease-seconds"]) throw new UsageError("--lan and --lease-seconds belong to `cyphonic adapter`", NODE_USAGE);
  const config: NodeConfig = {
    stateDir: values.state,
    tokenFile: values["token-file"] ?? null,
    port: portOption(values.port, 7000, "--port", true),
    tunName: values.tun ?? "cyph0",
    controlSocket: values.control ?? DEFAULT_CONTROL_SOCKET,
    dnsListen: values["dns-listen"]?.map((v) => endpointOption(v, "--dns-listen")) ?? "virtual-ip",
    dnsUpstream: values["dns-upstream"] ? endpointOption(values["dns-upstream"], "--dns-upstream") : null,
  };
  const daemon = new NodeDaemon(config);
  // Under systemd (Type=notify), the watchdog starts before the first start,
  // which may wait minutes for the cloud, and READY=1 follows a complete start.
  const notifier = SystemdNotifier.fromEnvironment();
  notifier.startWatchdog(() => true);
  await daemon.start();
  notifier.ready("node running");
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
