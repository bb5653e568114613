// Simulated nodes for the cloud scale test, run inside the benchmark's
// "scale" namespace next to one `cyphonic cloud` bound to 127.0.0.1.
//
//   fleet  creates COUNT nodes and their tokens in the cloud's database,
//          provisions each through the AS, registers it with the NMS and
//          then keeps it alive with the node's own NmsLink (a keep-alive
//          every interval the NMS states). Route instructions are
//          acknowledged and not acted on. Prints "ready", then a "status"
//          line every 5 s.
//   probe  does the same for a few nodes, then sends route requests at a
//          fixed rate to random fleet nodes and prints the latency of each,
//          from the request leaving to the response arriving, measured in
//          this process.
//
// Each node has its own UDP socket on its own loopback address (127.0.0.0/8
// is all on lo), so the NMS observes 10,000 distinct endpoints and its
// per-address handshake limit applies per node, as on a real network.
import { parseArgs } from "node:util";
import { databasePath } from "../../firmware/src/cloud/config.js";
import { readServicePublicKey } from "../../firmware/src/cloud/service-keys.js";
import { readSettings } from "../../firmware/src/cloud/settings.js";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";
import { NmsLink } from "../../firmware/src/node/nms-link.js";
import { RequestTracker } from "../../firmware/src/node/requests.js";
import { TokenFile } from "../../firmware/src/node/token-file.js";
import { NodePeerTag } from "../../firmware/src/node/tunnels.js";
import { KeyPair, generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { SignalType } from "../../firmware/src/protocol/signaling.js";
import { EndpointMux } from "../../firmware/src/transport/endpoint-mux.js";
import { SignalChannel } from "../../firmware/src/transport/signal-channel.js";
import { logger } from "../../firmware/src/util/log.js";
import { Welcome, delay, emit, forEachLimited, provisionNode } from "./sim-provision.js";

const AS_PORT = 7400;
const CLOUD_ADDRESS = "127.0.0.1";
/** Token lifetime. The simulator redeems its tokens within minutes. */
const TOKEN_TTL_MS = 3_600_000;
const REGISTER_TIMEOUT_MS = 60_000;
const STATUS_INTERVAL_MS = 5_000;
/** A node counts as kept alive when its last keep-alive response is at most this many intervals old. */
const FRESH_ACK_INTERVALS = 2.5;
/** Wait for the last responses after the window. It exceeds the route request timeout (5 s), so every request has ended by then. */
const DRAIN_MS = 6_000;

const log = logger("bench-sim");

interface SimNode {
  keys: KeyPair;
  mux: EndpointMux;
  welcome: Welcome;
  link: NmsLink | null;
  channel: SignalChannel<NodePeerTag> | null;
}

/** Returns the loopback address of node `index` of a group: 127.G.x.y with x and y in 1..250. */
function loopbackAddress(group: number, index: number): string {
  return `127.${group + Math.floor(index / 62_500)}.${(Math.floor(index / 250) % 250) + 1}.${(index % 250) + 1}`;
}

/** Creates the nodes and their tokens in the cloud's database, as `cyphonic admin` does. */
function createNodes(stateDir: string, namePrefix: string, count: number): string[] {
  const settings = readSettings(stateDir);
  const store = new CloudStore(databasePath(stateDir), { overlayDomain: settings.overlayDomain, pool: { cidr: settings.pool, reserved: [] } });
  try {
    const secrets: string[] = [];
    for (let i = 0; i < count; i++) {
      const node = store.createNode(`${namePrefix}${String(i).padStart(5, "0")}`, "node");
      secrets.push(store.createToken(node.id, TOKEN_TTL_MS).secret);
    }
    return secrets;
  } finally {
    store.close();
  }
}

/** Creates, provisions and registers `count` nodes, and returns them with the time each stage took. */
async function bringUp(stateDir: string, namePrefix: string, count: number, group: number, concurrency: number, requests: RequestTracker) {
  const started = Date.now();
  const secrets = createNodes(stateDir, namePrefix, count);
  const created = Date.now();

  const asKey = readServicePublicKey(stateDir, "as");
  const nodes: SimNode[] = [];
  await forEachLimited(secrets, concurrency, async (secret, index) => {
    const keys = generateKeyPair();
    const mux = new EndpointMux(log);
    await mux.listen(0, loopbackAddress(group, index));
    const token: TokenFile = { asEndpoints: [{ address: CLOUD_ADDRESS, port: AS_PORT }], asKey, token: secret };
    nodes.push({ keys, mux, welcome: await provisionNode(mux, keys, token, requests, log), link: null, channel: null });
  });
  const provisioned = Date.now();

  await forEachLimited(nodes, concurrency, async (node) => {
    startLink(node, requests);
    const deadline = Date.now() + REGISTER_TIMEOUT_MS;
    while (!node.link!.status().registered) {
      if (Date.now() > deadline) throw new Error(`node ${node.welcome.fqdn} did not register within ${REGISTER_TIMEOUT_MS} ms`);
      await delay(50);
    }
  });
  const registered = Date.now();
  return {
    nodes,
    seconds: { create: (created - started) / 1000, provision: (provisioned - created) / 1000, register: (registered - provisioned) / 1000 },
  };
}

/** Opens the node's session with the NMS: registration, keep-alives, and acknowledgements of route instructions. */
function startLink(node: SimNode, requests: RequestTracker): void {
  const channel = new SignalChannel<NodePeerTag>(
    node.keys,
    {
      acceptInitiation: () => ({ reject: "unknown_peer" }),
      onSignal: (peer, signal) => {
        if (requests.complete(signal)) return;
        if (node.link?.handle(signal)) return;
        // The NMS resends an instruction until it is acknowledged. The simulated node builds no tunnel from it.
        if (signal.type === SignalType.RouteInstruction) channel.signal(peer, { type: SignalType.RouteInstructionAck, instructionId: signal.instructionId });
      },
    },
    log,
    node.mux,
  );
  node.channel = channel;
  node.link = new NmsLink(channel, requests, node.welcome.nms, () => node.mux.port, [], log);
  node.link.start();
}

function linkHealth(nodes: SimNode[], keepaliveMs: number) {
  const now = Date.now();
  let registered = 0;
  let fresh = 0;
  let registrations = 0;
  for (const node of nodes) {
    const status = node.link!.status();
    if (status.registered) registered++;
    if (now - status.lastAckMs <= FRESH_ACK_INTERVALS * keepaliveMs) fresh++;
    registrations += status.registrations;
  }
  // Every node registers once at the start, so more registrations mean a lost NMS session.
  return { registered, fresh, reRegistrations: registrations - nodes.length };
}

async function runFleet(stateDir: string, count: number, concurrency: number, keepaliveMs: number): Promise<void> {
  const requests = new RequestTracker();
  const { nodes, seconds } = await bringUp(stateDir, "f", count, 1, concurrency, requests);
  emit("ready", { nodes: nodes.length, seconds, ...linkHealth(nodes, keepaliveMs) });
  const timer = setInterval(() => emit("status", linkHealth(nodes, keepaliveMs)), STATUS_INTERVAL_MS);
  const stop = () => {
    clearInterval(timer);
    emit("status", linkHealth(nodes, keepaliveMs));
    for (const node of nodes) {
      node.link?.stop();
      node.channel?.close();
      node.mux.close();
    }
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

async function runProbe(stateDir: string, count: number, concurrency: number, ratePerSecond: number, seconds: number): Promise<void> {
  const requests = new RequestTracker();
  const { nodes } = await bringUp(stateDir, "p", count, 200, concurrency, requests);
  const settings = readSettings(stateDir);
  const store = new CloudStore(databasePath(stateDir), { overlayDomain: settings.overlayDomain, pool: { cidr: settings.pool, reserved: [] } });
  const targets = store
    .listNodes()
    .filter((n) => n.name.startsWith("f") && n.publicKey !== null)
    .map((n) => n.virtualIP);
  store.close();
  if (targets.length === 0) throw new Error("no provisioned fleet nodes to request routes to");

  emit("measuring", { probers: nodes.length, targets: targets.length });
  const latenciesMs: number[] = [];
  const errors: Record<string, number> = {};
  const pending: Promise<void>[] = [];
  const intervalMs = 1000 / ratePerSecond;
  const start = performance.now();
  for (let i = 0; performance.now() - start < seconds * 1000; i++) {
    // Requests leave on a fixed schedule, not after the previous response, so a slow response does not thin out the samples.
    const due = start + i * intervalMs;
    const wait = due - performance.now();
    if (wait > 0) await delay(wait);
    const node = nodes[i % nodes.length]!;
    const target = targets[Math.floor(Math.random() * targets.length)]!;
    const sent = process.hrtime.bigint();
    pending.push(
      node.link!.requestRoute({ virtualIP: target }).then(
        () => {
          latenciesMs.push(Number(process.hrtime.bigint() - sent) / 1e6);
        },
        (err: Error) => {
          const key = err.name === "SignalError" ? `error ${(err as Error & { code?: string }).code}` : err.name;
          errors[key] = (errors[key] ?? 0) + 1;
        },
      ),
    );
  }
  await Promise.race([Promise.allSettled(pending), delay(DRAIN_MS)]);
  emit("result", { latenciesMs, errors, sent: pending.length });
  process.exit(0);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: {
      state: { type: "string" },
      count: { type: "string" },
      concurrency: { type: "string", default: "100" },
      "keepalive-ms": { type: "string", default: "5000" },
      rate: { type: "string", default: "20" },
      seconds: { type: "string", default: "30" },
    },
    allowPositionals: true,
  });
  const role = positionals[0];
  if (!values.state || !values.count || (role !== "fleet" && role !== "probe")) {
    throw new Error("usage: sim-cloud-nodes.ts fleet|probe --state DIR --count N [--concurrency N] [--keepalive-ms MS] [--rate PER_SECOND] [--seconds S]");
  }
  if (role === "fleet") await runFleet(values.state, Number(values.count), Number(values.concurrency), Number(values["keepalive-ms"]));
  else await runProbe(values.state, Number(values.count), Number(values.concurrency), Number(values.rate), Number(values.seconds));
}

main().catch((err: unknown) => {
  emit("error", { message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
