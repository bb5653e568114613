// Answers DNS lookups for overlay names. A peer's FQDN resolves to its
// virtual IP only once the tunnel to it is up, so the first packet the
// application sends already has a path: the lookup triggers route selection
// and waits for the handshake.
import { Peer } from "../transport/peer.js";
import { Logger } from "../util/log.js";
import { OverlayLookupResult } from "./dns/index.js";
import { SignalError } from "./requests.js";
import { NodePeerTag } from "./tunnels.js";

/** Answers carry a short TTL: a peer's virtual IP is stable, but whether it exists can change. */
const ANSWER_TTL_SECONDS = 10;
/** Maximum wait for the tunnel after the route was selected. */
const TUNNEL_READY_TIMEOUT_MS = 8_000;

export interface ResolverHost {
  readonly fqdn: string;
  readonly virtualIP: string;
  readonly tunnels: { getByFqdn(fqdn: string): Peer<NodePeerTag> | undefined };
  connect(target: { fqdn: string }): Promise<Peer<NodePeerTag>>;
}

export class OverlayResolver {
  private readonly inFlight = new Map<string, Promise<OverlayLookupResult>>();
  private readonly waiters = new Map<Peer<NodePeerTag>, (() => void)[]>();

  constructor(
    private readonly host: ResolverHost,
    private readonly log: Logger,
  ) {}

  lookup(fqdn: string): Promise<OverlayLookupResult> {
    if (fqdn === this.host.fqdn) return Promise.resolve(this.answer(this.host.virtualIP));
    const peer = this.host.tunnels.getByFqdn(fqdn);
    if (peer?.current && peer.tag.kind === "tunnel") return Promise.resolve(this.answer(peer.tag.virtualIP));
    const running = this.inFlight.get(fqdn);
    if (running) return running;
    const p = this.resolve(fqdn).finally(() => this.inFlight.delete(fqdn));
    this.inFlight.set(fqdn, p);
    return p;
  }

  /** Called when a tunnel's session comes up; releases lookups waiting for it. */
  tunnelReady(peer: Peer<NodePeerTag>): void {
    const list = this.waiters.get(peer);
    if (!list) return;
    this.waiters.delete(peer);
    for (const wake of list) wake();
  }

  private async resolve(fqdn: string): Promise<OverlayLookupResult> {
    let peer: Peer<NodePeerTag>;
    try {
      peer = await this.host.connect({ fqdn });
    } catch (err) {
      if (err instanceof SignalError && err.code === "not_found") return { kind: "nxdomain" };
      this.log.warn({ fqdn, err: (err as Error).message }, "route selection failed");
      return { kind: "servfail", reason: (err as Error).message };
    }
    if (peer.tag.kind !== "tunnel") return { kind: "servfail", reason: "route named a service key" };
    if (!peer.current && !(await this.waitForTunnel(peer))) {
      return { kind: "servfail", reason: `tunnel to ${fqdn} not up within ${TUNNEL_READY_TIMEOUT_MS} ms` };
    }
    return this.answer(peer.tag.virtualIP);
  }

  private waitForTunnel(peer: Peer<NodePeerTag>): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), TUNNEL_READY_TIMEOUT_MS);
      const list = this.waiters.get(peer) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
      this.waiters.set(peer, list);
    });
  }

  private answer(ipv4: string): OverlayLookupResult {
    return { kind: "address", ipv4, ttlSeconds: ANSWER_TTL_SECONDS };
  }
}
