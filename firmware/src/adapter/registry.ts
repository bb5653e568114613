// The adapter's list of general nodes: fetched from the AS at start and
// whenever its version changes, cached on disk so a restart without the cloud
// still serves the devices, and each node's key generated here and bound in
// the AS. Every general node is a member of the overlay with its own key.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { KeyPair } from "../protocol/crypto.js";
import { GENERAL_NODES_PAGE_SIZE, GeneralNodeEntry, ServiceInfo, SignalType } from "../protocol/signaling.js";
import { Peer } from "../transport/peer.js";
import { pickEndpoint } from "../transport/reachability.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { writeFileAtomic } from "../util/files.js";
import { Logger } from "../util/log.js";
import { loadOrCreateKey } from "../node/identity.js";
import { RequestTracker } from "../node/requests.js";
import { NodePeerTag } from "../node/tunnels.js";

const REQUEST_TIMEOUT_MS = 5_000;
/** How often the adapter checks whether its list changed. */
export const REGISTRY_POLL_MS = 10_000;

export interface GeneralNode {
  nodeId: number;
  fqdn: string;
  mac: string;
  virtualIP: string;
  keys: KeyPair;
}

const cacheSchema = z.object({
  version: z.number().int(),
  nodes: z.array(z.object({ nodeId: z.number().int().positive(), fqdn: z.string(), mac: z.string(), virtualIP: z.ipv4() })),
});

export class GeneralNodeRegistry {
  private version: number | null = null;
  private nodes: GeneralNode[] = [];
  private timer: NodeJS.Timeout | null = null;
  private syncing = false;
  private readonly asPeer: Peer<NodePeerTag>;

  constructor(
    private readonly stateDir: string,
    private readonly channel: SignalChannel<NodePeerTag>,
    private readonly requests: RequestTracker,
    as: ServiceInfo,
    overlayInterfaces: string[],
    /** Called with the full list whenever it changes. */
    private readonly onChange: (nodes: GeneralNode[]) => void,
    private readonly log: Logger,
  ) {
    this.asPeer =
      channel.engine.peer(as.staticKey) ??
      channel.engine.addPeer(new Peer<NodePeerTag>(as.staticKey, { kind: "direct", endpoint: pickEndpoint(as.endpoints, overlayInterfaces) }, { kind: "service", service: "as" }, true));
  }

  get all(): GeneralNode[] {
    return this.nodes;
  }

  /** Loads the cached list (so devices are served at once), then syncs with the AS now and periodically. */
  async start(): Promise<void> {
    const cached = this.loadCache();
    if (cached) {
      this.version = cached.version;
      this.nodes = cached.nodes.map((n) => ({ ...n, keys: this.keyFor(n.nodeId) }));
      this.log.info({ count: this.nodes.length }, "general nodes loaded from cache");
      this.onChange(this.nodes);
    }
    await this.sync();
    this.timer = setInterval(() => void this.sync(), REGISTRY_POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Fetches the list when its version changed, binds missing keys, and reports a change. Errors are logged, not thrown. */
  async sync(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    try {
      const first = await this.page(0);
      // The version covers the keys too, so a binding made here shows up as one more change.
      if (first.version === this.version) return;
      const entries = [...first.entries];
      while (entries.length < first.total) {
        const next = await this.page(entries.length);
        if (next.version !== first.version) return; // changed mid-fetch: the next poll starts over
        if (next.entries.length === 0) break;
        entries.push(...next.entries);
      }
      await this.bindKeys(entries);
      this.version = first.version;
      this.nodes = entries.map((e) => ({ nodeId: e.nodeId, fqdn: e.fqdn, mac: e.mac, virtualIP: e.virtualIP, keys: this.keyFor(e.nodeId) }));
      this.saveCache();
      this.log.info({ count: this.nodes.length, version: first.version }, "general nodes updated from the cloud");
      this.onChange(this.nodes);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "general node list not refreshed; serving the cached list");
    } finally {
      this.syncing = false;
    }
  }

  private async page(offset: number): Promise<{ version: number; total: number; entries: GeneralNodeEntry[] }> {
    const reply = await this.requests.request(
      "general node list",
      (requestId) => ({ type: SignalType.GeneralNodesRequest, requestId, offset }),
      (s) => this.channel.signal(this.asPeer, s),
      REQUEST_TIMEOUT_MS,
    );
    if (reply.type !== SignalType.GeneralNodes) throw new Error(`unexpected AS response type 0x${reply.type.toString(16)} to a general node list request`);
    if (reply.entries.length > GENERAL_NODES_PAGE_SIZE) throw new Error("AS sent an oversized page");
    return reply;
  }

  private async bindKeys(entries: GeneralNodeEntry[]): Promise<void> {
    for (const e of entries) {
      const keys = this.keyFor(e.nodeId);
      if (e.publicKey?.equals(keys.publicKey)) continue;
      await this.requests.request(
        "general node key binding",
        (requestId) => ({ type: SignalType.BindKeyRequest, requestId, nodeId: e.nodeId, publicKey: keys.publicKey }),
        (s) => this.channel.signal(this.asPeer, s),
        REQUEST_TIMEOUT_MS,
      );
      e.publicKey = keys.publicKey;
      this.log.info({ node: e.nodeId, fqdn: e.fqdn }, "general node key bound");
    }
  }

  /** Loads a general node's private key from its own file under general/, creating it on first use. */
  private keyFor(nodeId: number): KeyPair {
    return loadOrCreateKey(path.join(this.stateDir, "general", String(nodeId)));
  }

  private cacheFile(): string {
    return path.join(this.stateDir, "general-nodes.json");
  }

  private loadCache(): z.infer<typeof cacheSchema> | null {
    const file = this.cacheFile();
    if (!fs.existsSync(file)) return null;
    try {
      const parsed = cacheSchema.safeParse(JSON.parse(fs.readFileSync(file, "utf8")));
      if (parsed.success) return parsed.data;
      this.log.error({ file, err: parsed.error.issues[0]?.message }, "invalid general node cache ignored");
    } catch (err) {
      this.log.error({ file, err }, "unreadable general node cache ignored");
    }
    return null;
  }

  private saveCache(): void {
    const doc = { version: this.version, nodes: this.nodes.map(({ nodeId, fqdn, mac, virtualIP }) => ({ nodeId, fqdn, mac, virtualIP })) };
    writeFileAtomic(this.cacheFile(), JSON.stringify(doc, null, 2) + "\n", 0o600);
  }
}
