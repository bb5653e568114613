// `cyphonic cloud|as|nms|trs`: run the cloud services until SIGINT/SIGTERM.
import { parseArgs } from "node:util";
import { DEFAULT_PORTS, cloudConfigSchema } from "../cloud/config.js";
import { ServiceSelection, startCloud } from "../cloud/cloud.js";
import { loadSettings } from "../cloud/settings.js";
import { SystemdNotifier } from "../appliance/systemd-notify.js";
import { ControlServer } from "../util/control-socket.js";
import { logger } from "../util/log.js";
import { UsageError, intOption, portOption, waitForSignal } from "./common.js";

export const CLOUD_USAGE = `cyphonic cloud|as|nms|trs --state DIR --advertise ADDRESS [options]
  --state DIR            state directory: database and service keys (created 0700)
  --advertise ADDRESS    address nodes use to reach the services; repeat it for IPv4 and IPv6
  --bind ADDRESS         address to listen on (default: all)
  --as-port N            AS UDP port (default ${DEFAULT_PORTS.as})
  --nms-port N           NMS UDP port (default ${DEFAULT_PORTS.nms})
  --trs-port N           TRS UDP port (default ${DEFAULT_PORTS.trs})
  --domain NAME          overlay domain, fixed at first start (default cyphonic.internal)
  --pool CIDR            virtual IPv4 pool, fixed at first start (default 100.64.0.0/16)
  --keepalive-ms N       keep-alive interval nodes are told to use (default 5000)
  --control PATH         control socket for status (default /run/cyphonic/cloud.sock)`;

export async function runCloud(command: string, argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      state: { type: "string" },
      advertise: { type: "string", multiple: true },
      bind: { type: "string" },
      "as-port": { type: "string" },
      "nms-port": { type: "string" },
      "trs-port": { type: "string" },
      domain: { type: "string" },
      pool: { type: "string" },
      "keepalive-ms": { type: "string" },
      control: { type: "string" },
    },
    strict: true,
  });
  if (!values.state) throw new UsageError("--state DIR is required", CLOUD_USAGE);
  const settings = loadSettings(values.state, { overlayDomain: values.domain, pool: values.pool });
  const parsed = cloudConfigSchema.safeParse({
    stateDir: values.state,
    advertise: values.advertise ?? [],
    bind: values.bind,
    ports: {
      as: portOption(values["as-port"], DEFAULT_PORTS.as, "--as-port"),
      nms: portOption(values["nms-port"], DEFAULT_PORTS.nms, "--nms-port"),
      trs: portOption(values["trs-port"], DEFAULT_PORTS.trs, "--trs-port"),
    },
    overlayDomain: settings.overlayDomain,
    pool: settings.pool,
    keepaliveIntervalMs: intOption(values["keepalive-ms"], 5_000, "--keepalive-ms", 1_000, 60_000),
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UsageError(`invalid ${issue.path.join(".") || "option"}: ${issue.message}`, CLOUD_USAGE);
  }
  const which: ServiceSelection =
    command === "cloud" ? { as: true, nms: true, trs: true } : { as: command === "as", nms: command === "nms", trs: command === "trs" };
  const notifier = SystemdNotifier.fromEnvironment();
  notifier.startWatchdog(() => true);
  const cloud = await startCloud(parsed.data, which);
  const log = logger("cloud");
  const control = await ControlServer.start(values.control ?? "/run/cyphonic/cloud.sock", () => ({ services: cloud.status() }), log);
  notifier.ready(`${command} running`);
  const signal = await waitForSignal();
  log.info({ signal }, "stopping");
  notifier.stopping();
  notifier.stopWatchdog();
  await control.close();
  cloud.close();
}
