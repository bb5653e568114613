// Kernel-side LAN setup of the adapter. General nodes on the LAN get virtual
// IPs from the overlay prefix by DHCP, so they treat every overlay address as
// on-link and send ARP requests for it. The adapter replies with its own MAC
// (proxy ARP), the kernel forwards their packets into the TUN device, and
// replies from the TUN device follow a /32 route back out of the LAN interface.
// Only (MAC, IP) pairs with a lease get forwarded.
import { logger, type Logger } from "../../util/log.js";
import {
  formatSavedSysctls,
  lanSysctlSettings,
  parseSavedSysctls,
  readOriginalValues,
  restoreOriginalValues,
  writeSettings,
  type SavedSysctls,
} from "./lan-sysctls.js";
import {
  addAdapterAddress,
  addHostRoute,
  addStaticNeighbor,
  deleteAdapterAddress,
  deleteHostRoute,
  deleteStaticNeighbor,
  flushHostRoutes,
  flushStaticNeighbors,
} from "./lan-routes.js";
import { addLeaseElement, applyRuleset, deleteLeaseElement, deleteTable, readCounter, readSavedSysctlsText } from "./nft-table.js";
import {
  LanSetupError,
  validateGeneralNodeIP,
  validateLanSetupOptions,
  validateLeaseMac,
  type LanConfig,
  type LanSetupOptions,
} from "./options.js";
import { buildLanRuleset, SPOOFED_FORWARD_COUNTER, SPOOFED_INPUT_COUNTER, tableComment } from "./ruleset.js";

export { LanSetupError, type LanSetupOptions } from "./options.js";

/** Packets from the LAN dropped since apply() because their (MAC, IP) pair has no lease. */
export interface LanDropCounters {
  spoofedForwardPackets: number;
  spoofedInputPackets: number;
}

/**
 * The applied LAN setup. Methods run one at a time in call order, so a
 * remove() that overlaps a lease update cannot leave an entry behind.
 * Every `ip` and `nft` failure rejects with IpCommandError or
 * NftCommandError, whose message contains the command and its stderr.
 */
export class LanSetup {
  private removed = false;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly config: LanConfig,
    private readonly savedSysctls: SavedSysctls,
    private readonly log: Logger,
  ) {}

  /**
   * Configures the kernel: the nftables table, the sysctls of lanSysctlSettings
   * and the adapter's virtual IP as a /32 on the LAN interface.
   *
   * The result is the same whatever an earlier run left behind, also one that
   * crashed: the lease set starts empty, and general-node routes and neighbor
   * entries of the earlier run are deleted, so the caller adds the current
   * general nodes and leases again. Original sysctl values are stored in the
   * table's comment, so a crash does not lose them. When a step fails, the
   * steps before it are undone and the error is raised.
   *
   * NOTE: a table deleted by hand takes the saved values with it, and the next
   * apply() then records the current values as the originals.
   */
  static async apply(options: LanSetupOptions): Promise<LanSetup> {
    const config = validateLanSetupOptions(options);
    const log = logger("lan", { interface: config.lanInterface, tunInterface: config.tunInterface });
    const settings = lanSysctlSettings(config.lanInterface);
    const previous = parseSavedSysctls(await readSavedSysctlsText());
    // Reading first also checks that the LAN interface exists, before anything changes.
    const saved = await readOriginalValues(settings, previous);
    const setup = new LanSetup(config, saved, log);
    try {
      await applyRuleset(buildLanRuleset(config, tableComment(formatSavedSysctls(saved))));
      await writeSettings(settings);
      await flushStaticNeighbors(config.lanInterface);
      await flushHostRoutes(config.lanInterface);
      await addAdapterAddress(config.lanInterface, config.adapterVirtualIP);
    } catch (err) {
      log.error({ err }, "applying the LAN setup failed, so the applied steps are being undone");
      await setup.remove().catch((undoErr: unknown) => log.error({ err: undoErr }, "undoing a partly applied LAN setup failed"));
      throw err;
    }
    log.info(
      {
        virtualIP: config.adapterVirtualIP,
        overlay: config.overlay.cidr,
        tunnelMtuBytes: config.tunnelMtuBytes,
        tcpMssBytes: config.tcpMssBytes,
        savedSysctls: formatSavedSysctls(saved),
      },
      "LAN setup applied",
    );
    return setup;
  }

  /** Routes `virtualIP`/32 out of the LAN interface, so replies from the overlay reach the general node. */
  async addGeneralNode(virtualIP: string): Promise<void> {
    const address = validateGeneralNodeIP(this.config, virtualIP);
    return this.serialize(async () => {
      this.assertNotRemoved();
      await addHostRoute(this.config.lanInterface, address);
      this.log.info({ virtualIP: address }, "general node route added");
    });
  }

  /** Deletes the route of `virtualIP`. Does nothing when it does not exist. */
  async removeGeneralNode(virtualIP: string): Promise<void> {
    const address = validateGeneralNodeIP(this.config, virtualIP);
    return this.serialize(async () => {
      this.assertNotRemoved();
      await deleteHostRoute(this.config.lanInterface, address);
      this.log.info({ virtualIP: address }, "general node route removed");
    });
  }

  /**
   * Lets packets from `mac` with source `virtualIP` through the forward and
   * input checks, and pins `virtualIP` to `mac` in the neighbor table.
   */
  async allowLease(mac: string, virtualIP: string): Promise<void> {
    const normalizedMac = validateLeaseMac(mac);
    const address = validateGeneralNodeIP(this.config, virtualIP);
    return this.serialize(async () => {
      this.assertNotRemoved();
      await addLeaseElement(normalizedMac, address);
      await addStaticNeighbor(this.config.lanInterface, address, normalizedMac);
      this.log.info({ mac: normalizedMac, virtualIP: address }, "lease allowed");
    });
  }

  /**
   * Removes the pair from the lease set, so its packets are dropped from the
   * next packet on, and deletes its neighbor entry unless it points to
   * another MAC. Does nothing for a pair that has no lease.
   */
  async revokeLease(mac: string, virtualIP: string): Promise<void> {
    const normalizedMac = validateLeaseMac(mac);
    const address = validateGeneralNodeIP(this.config, virtualIP);
    return this.serialize(async () => {
      this.assertNotRemoved();
      const wasLeased = await deleteLeaseElement(normalizedMac, address);
      await deleteStaticNeighbor(this.config.lanInterface, address, normalizedMac);
      if (wasLeased) this.log.info({ mac: normalizedMac, virtualIP: address }, "lease revoked");
      else this.log.warn({ mac: normalizedMac, virtualIP: address, reason: "not_leased" }, "revoked pair had no lease");
    });
  }

  /** Reads the drop counters of the (MAC, IP) check. */
  async readDropCounters(): Promise<LanDropCounters> {
    return this.serialize(async () => {
      this.assertNotRemoved();
      const forward = await readCounter(SPOOFED_FORWARD_COUNTER);
      const input = await readCounter(SPOOFED_INPUT_COUNTER);
      return { spoofedForwardPackets: forward.packets, spoofedInputPackets: input.packets };
    });
  }

  /**
   * Undoes apply(): deletes the neighbor entries, routes and address it
   * added, writes back the sysctl values it changed and deletes the table.
   * The table goes last, so a failed run keeps the original values in its
   * comment for the next apply() and remove(). A second call does nothing.
   */
  async remove(): Promise<void> {
    return this.serialize(async () => {
      if (this.removed) return;
      const lan = this.config.lanInterface;
      await flushStaticNeighbors(lan);
      await flushHostRoutes(lan);
      await deleteAdapterAddress(lan, this.config.adapterVirtualIP);
      await restoreOriginalValues(this.savedSysctls, this.log);
      await deleteTable();
      this.removed = true;
      this.log.info({ restoredSysctls: formatSavedSysctls(this.savedSysctls) }, "LAN setup removed");
    });
  }

  /** Runs `operation` after every earlier call has settled. */
  private serialize<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation, operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private assertNotRemoved(): void {
    if (this.removed) {
      throw new LanSetupError("REMOVED", "the LAN setup was removed. Call LanSetup.apply() again before changing general nodes or leases");
    }
  }
}
