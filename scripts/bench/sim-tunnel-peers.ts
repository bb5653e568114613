// Simulated peers that open tunnels to the general nodes behind an adapter,
// for the adapter's memory test. Each peer is a full member of the overlay
// built from the node daemon's own Member class (NMS link, route requests,
// tunnels), on its own UDP socket and without a TUN device: packets out of
// its tunnels are discarded. Every peer requests a route to every target,
// so the adapter ends up with peers x targets tunnels.
//
// Usage: sim-tunnel-peers.ts CONFIG.json, where the file contains
// { "tokenFiles": [...], "targets": ["<virtual IP>", ...] }. Prints JSON
// lines: "registered", then "sessions" once a second.
import fs from "node:fs";
import { Member } from "../../firmware/src/node/member.js";
import { RequestTracker } from "../../firmware/src/node/requests.js";
import { readTokenFile } from "../../firmware/src/node/token-file.js";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { EndpointMux } from "../../firmware/src/transport/endpoint-mux.js";
import { Counters } from "../../firmware/src/util/counters.js";
import { logger } from "../../firmware/src/util/log.js";
import { delay, emit, provisionNode } from "./sim-provision.js";

/** Pause between route requests of one peer, below the NMS's limit of 20 per second and node. */
const ROUTE_REQUEST_INTERVAL_MS = 70;
const REGISTER_TIMEOUT_MS = 30_000;
/** The TUN device of the benchmark's own node in the same namespace, whose address is no underlay endpoint. */
const OVERLAY_INTERFACES = ["cyph0"];

const log = logger("bench-peer");

async function main(): Promise<void> {
  const configFile = process.argv[2];
  if (!configFile) throw new Error("usage: sim-tunnel-peers.ts CONFIG.json");
  const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as { tokenFiles: string[]; targets: string[] };
  const requests = new RequestTracker();
  const counters = new Counters();

  const members: Member[] = [];
  for (const file of config.tokenFiles) {
    const keys = generateKeyPair();
    const mux = new EndpointMux(log);
    await mux.listen(0);
    const welcome = await provisionNode(mux, keys, readTokenFile(file), requests, log);
    const member = new Member(
      { keys, nodeId: welcome.nodeId, fqdn: welcome.fqdn, virtualIP: welcome.virtualIP, nms: welcome.nms },
      mux,
      requests,
      () => counters.add("delivered"),
      counters,
      log,
      OVERLAY_INTERFACES,
    );
    member.start();
    members.push(member);
  }
  const deadline = Date.now() + REGISTER_TIMEOUT_MS;
  while (!members.every((m) => m.nms.status().registered)) {
    if (Date.now() > deadline) throw new Error(`simulated peers did not register within ${REGISTER_TIMEOUT_MS} ms`);
    await delay(100);
  }
  emit("registered", { peers: members.length });

  const failures: Record<string, number> = {};
  const report = setInterval(() => {
    const established = members.reduce((sum, m) => sum + m.tunnels.all().filter((p) => p.current !== null).length, 0);
    emit("sessions", { established, failures });
  }, 1_000);
  process.once("SIGTERM", () => {
    clearInterval(report);
    for (const m of members) m.stop();
    process.exit(0);
  });
  await Promise.all(
    members.map(async (member) => {
      for (const target of config.targets) {
        // The general node behind NAPT sends the first handshake once the NMS instructs it.
        await member.connect({ virtualIP: target }).catch((err: Error) => {
          failures[err.message] = (failures[err.message] ?? 0) + 1;
        });
        await delay(ROUTE_REQUEST_INTERVAL_MS);
      }
    }),
  );
}

main().catch((err: unknown) => {
  emit("error", { message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
