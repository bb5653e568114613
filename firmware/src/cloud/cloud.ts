// Runs the cloud services, all three in one process (`cyphonic cloud`) or
// one alone (`cyphonic as|nms|trs`), over one state directory.
import { ServiceInfo } from "../protocol/signaling.js";
import { logger } from "../util/log.js";
import { AuthenticationService } from "./as.js";
import { CloudConfig, databasePath } from "./config.js";
import { NodeManagementService } from "./nms.js";
import { loadOrCreateServiceKey } from "./service-keys.js";
import { CloudStore } from "./store/index.js";
import { TunnelRelayService } from "./trs.js";

const log = logger("cloud");

export type ServiceSelection = { as: boolean; nms: boolean; trs: boolean };

export interface RunningCloud {
  store: CloudStore;
  as?: AuthenticationService;
  nms?: NodeManagementService;
  trs?: TunnelRelayService;
  /** Counters of each running service, for the control socket. */
  status(): Record<string, Record<string, number>>;
  close(): void;
}

export async function startCloud(config: CloudConfig, which: ServiceSelection): Promise<RunningCloud> {
  const store = new CloudStore(databasePath(config.stateDir), {
    overlayDomain: config.overlayDomain,
    pool: { cidr: config.pool, reserved: [] },
  });
  const keys = {
    as: loadOrCreateServiceKey(config.stateDir, "as"),
    nms: loadOrCreateServiceKey(config.stateDir, "nms"),
    trs: loadOrCreateServiceKey(config.stateDir, "trs"),
  };
  const info = (port: number, key: Buffer): ServiceInfo => ({ endpoints: config.advertise.map((address) => ({ address, port })), staticKey: key });
  const nmsInfo = info(config.ports.nms, keys.nms.publicKey);
  const trsInfo = info(config.ports.trs, keys.trs.publicKey);
  const running: RunningCloud = {
    store,
    status() {
      const out: Record<string, Record<string, number>> = {};
      if (running.as) out.as = running.as.channel.countersSnapshot();
      if (running.nms) out.nms = running.nms.channel.countersSnapshot();
      if (running.trs) out.trs = running.trs.channel.countersSnapshot();
      return out;
    },
    close() {
      running.as?.close();
      running.nms?.close();
      running.trs?.close();
      store.close();
    },
  };
  try {
    if (which.trs) {
      running.trs = new TunnelRelayService({ store, identity: keys.trs });
      await running.trs.listen(config.ports.trs, config.bind);
    }
    if (which.nms) {
      running.nms = new NodeManagementService({ store, identity: keys.nms, trs: trsInfo, keepaliveIntervalMs: config.keepaliveIntervalMs });
      await running.nms.listen(config.ports.nms, config.bind);
    }
    if (which.as) {
      const prefixLength = Number(config.pool.split("/")[1]);
      running.as = new AuthenticationService({ store, identity: keys.as, nms: nmsInfo, trs: trsInfo, prefixLength });
      await running.as.listen(config.ports.as, config.bind);
    }
  } catch (err) {
    running.close();
    throw err;
  }
  log.info({ advertise: config.advertise, domain: config.overlayDomain, pool: config.pool, services: which }, "cloud started");
  return running;
}
