// Renders a run's record into docs/benchmarks.md and docs/benchmarks.png.
// Also a command, to render a record again after a change to this file:
//   node --import tsx scripts/bench/report.ts RESULTS.json [DOCS_DIR]
import fs from "node:fs";
import path from "node:path";
import { SystemFigures, TargetResult, allFigures, evaluateTargets, fmt } from "./figures.js";
import { adapterNodeOptions } from "./overlay.js";
import { writePlot } from "./plot.js";
import type { RunRecord } from "./results.js";
import { Summary, percentile, summarize } from "./stats.js";

const PLOT_FILE = "benchmarks.png";
const MARKDOWN_FILE = "benchmarks.md";
const MB = 1e6;

/** Writes the markdown and the plot into docsDir, prints the targets, and returns the paths written. */
export function writeReport(run: RunRecord, docsDir: string, workDir: string): { markdown: string; plot: string; targets: TargetResult[] } {
  fs.mkdirSync(docsDir, { recursive: true });
  const figures = [...allFigures(run).values()];
  const targets = evaluateTargets(run);
  const plot = path.join(docsDir, PLOT_FILE);
  const kind = run.config.quick ? "quick run, smoke figures" : "full run";
  writePlot(figures, workDir, plot, `CYPHONIC benchmark, ${kind}, ${run.startedAt.slice(0, 10)}, commit ${run.commit}`);
  const markdown = path.join(docsDir, MARKDOWN_FILE);
  fs.writeFileSync(markdown, renderMarkdown(run, figures, targets));
  for (const t of targets) process.stdout.write(`bench: target ${t.status.toUpperCase()}: ${t.target}: ${t.measured}\n`);
  return { markdown, plot, targets };
}

function renderMarkdown(run: RunRecord, figures: SystemFigures[], targets: TargetResult[]): string {
  const c = run.config;
  const wg = figures.find((f) => f.record.id === "wireguard-go");
  const lines: string[] = [];
  const add = (...more: string[]) => lines.push(...more);

  add("# Benchmarks", "");
  add("This page is written by `make bench` (scripts/bench/). Do not edit it by hand: run the benchmark again.", "");
  if (c.quick) {
    add("> **Quick run (`BENCH_QUICK=1`): smoke figures only.** Every phase ran shortened (one round, runs of 1-2 s, a few hundred cloud nodes), to check that the harness works. Do not compare or quote these figures.", "");
  }
  add(`Run of ${run.startedAt.replace("T", " ").slice(0, 16)} UTC, ${Math.round(run.durationSeconds / 60)} min, at commit ${run.commit}.`, "");

  add("## Targets", "");
  add("Each target compares medians of systems measured in the same run, in interleaved rounds.", "");
  add("| target | measured | result |", "| --- | --- | --- |");
  for (const t of targets) add(`| ${t.target} | ${t.measured} | ${t.status} |`);
  add("");

  add("## Machine and versions", "");
  add("| item | value |", "| --- | --- |");
  add(`| CPU | ${run.machine.cpuModel}, ${run.machine.cores} cores |`);
  add(`| memory | ${run.machine.memoryGiB} GiB |`);
  add(`| system | ${run.machine.os}, Linux ${run.machine.kernel} |`);
  for (const [name, version] of Object.entries(run.versions)) add(`| ${name} | ${version} |`);
  add(`| CYPHONIC | commit ${run.commit} |`);
  add("");
  add("The machine is shared with other work, so absolute figures vary between runs. Only the ratios between systems of one run are meaningful.", "");

  add("## Setup", "");
  add(
    `The lab is \`scripts/lab.sh\` with the prefix \`${c.prefix}\`: Linux network namespaces joined by veth pairs, an internet segment on a bridge, and the NAPT router \`nata\` (nftables masquerade) in front of the host \`adapter\`.`,
    "All traffic goes from a client to an iperf3 server on `cn2`, a host on the internet segment, and crosses the same underlay in every case: `adapter`, `nata`, the bridge, `cn2`.",
    "",
  );
  add("| case | client host | server address on cn2 | tunnel processes |", "| --- | --- | --- | --- |");
  const tunnelProcesses: Record<string, string> = {
    plain: "none",
    "wireguard-go": "wireguard-go on adapter and cn2",
    "nebula-aes": "nebula on adapter and cn2 (lighthouse)",
    "nebula-chacha": "nebula on adapter and cn2 (lighthouse)",
    "cyphonic-node": "`cyphonic node` on adapter and cn2",
    "cyphonic-adapter": "`cyphonic adapter` on adapter, `cyphonic node` on cn2",
  };
  for (const f of figures) add(`| ${f.record.label} | ${f.record.client} | ${f.record.server} | ${tunnelProcesses[f.record.id] ?? ""} |`);
  add("");
  add(
    "- (e) is the general node scenario: `gn` is an unmodified device on the adapter's LAN with a DHCP lease from the adapter, and the adapter forwards its packets into gn's own tunnel to the same peer as in (d).",
    "- (d) and (e) take turns on the host `adapter`: the plain node and the adapter both route the overlay prefix into their own TUN device, so one daemon is stopped while the other runs. Each keeps its state directory across the restarts.",
    "- Every tunnel has MTU 1420. Nebula's default of 1300 is raised to 1420, so every tunnel carries TCP segments of the same size.",
    "- Nebula runs once with `cipher: aes` (AES-256-GCM, its default in the nebula source, main.go) and once with `cipher: chachapoly`, and its firewall admits all traffic. wireguard-go and CYPHONIC use ChaCha20-Poly1305.",
    "- The CYPHONIC cloud runs on the host `cloud`. The tunnels of (d) and (e) are direct (no relay), because the peer on cn2 is reachable without NAPT.",
    "",
  );

  add("## Method", "");
  add(
    `- Rounds: ${c.rounds}. Each round runs every system once: odd rounds in the order (a) to (e), even rounds backwards. Each system's figures below are the minimum, median and maximum over the rounds.`,
    `- Ping: \`ping -c ${c.pingCount} -i ${c.pingIntervalSeconds} -W 1 SERVER\` after a warm-up. The RTT figures cover all replies of all rounds.`,
    `- TCP: \`iperf3 -c SERVER -J -t ${c.tcpSeconds}\`, one run per round, the receiver's rate.`,
    `- UDP: \`iperf3 -c SERVER -J -u -b LOAD -l ${c.udpPayloadBytes} -w 2M -t ${c.udpSeconds}\` at ${c.udpLoadsMbps.join(", ")} Mbit/s: receiver's rate, jitter and lost datagrams. The ${c.udpPayloadBytes}-byte payload fits every tunnel's MTU. \`-w 2M\` keeps the iperf3 receiver's socket buffer from being the bottleneck.`,
    `- UDP capacity: paced iperf3 runs of ${c.capacity.stepSeconds} s from ${c.capacity.startMbps} Mbit/s (later rounds from ${c.capacity.laterRoundStartFraction}x the previous result), the load multiplied by ${c.capacity.factor} while the loss stays at most ${c.capacity.lossLimitPercent}%, then ${c.capacity.bisections} bisection steps. The capacity is the highest load that passed. When iperf3 could not send the offered load, the search stops there, and the capacity is a lower bound (marked "sender-limited").`,
    "- CPU time per packet: utime + stime from /proc/PID/stat of the tunnel processes at both ends (with their child processes), over each iperf3 run, divided by the packets received and sent on the tunnel's interface on `cn2` (its TUN device). Every tunnel packet crosses that interface once and is handled once by each end, so the figure is the cost of one packet at both ends together. The underlay NIC would undercount: it counts a batch that CYPHONIC sends with UDP segmentation offload as one packet. The clock tick is 10 ms.",
    "",
  );

  add("## Results: paths", "");
  add("Cells hold min / median / max. Ratios divide a system's median by wireguard-go's median of the same run. Higher is better for throughput, lower for RTT and CPU time.", "");
  add(
    "| case | TCP Mbit/s | ratio | UDP capacity Mbit/s | ratio | RTT ms | ratio | CPU µs/packet (TCP) | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const f of figures) {
    const cap = triple(f.capacityMbps) + (f.capacitySenderLimited ? " (sender-limited)" : "");
    add(
      `| ${f.record.label} | ${triple(f.tcpMbps)} | ${ratioText(f.tcpMbps, wg?.tcpMbps)} | ${cap} | ${ratioText(f.capacityMbps, wg?.capacityMbps)} | ${triple(f.rttMs)} | ${ratioText(f.rttMs, wg?.rttMs)} | ${triple(f.tcpCpuUsPerPacket)} | ${ratioText(f.tcpCpuUsPerPacket, wg?.tcpCpuUsPerPacket)} |`,
    );
  }
  add("");
  add("| case | RTT p99 ms | pings lost | TCP retransmits per run |", "| --- | --- | --- | --- |");
  for (const f of figures) add(`| ${f.record.label} | ${f.rttP99Ms === null ? "-" : fmt(f.rttP99Ms)} | ${f.pingLost} of ${f.pingSent} | ${triple(f.tcpRetransmits)} |`);
  add("");

  add("### UDP at fixed loads", "");
  add("| case | offered Mbit/s | received Mbit/s | jitter ms | lost datagrams | CPU µs/packet |", "| --- | --- | --- | --- | --- | --- |");
  for (const f of figures) {
    for (const u of f.udp) add(`| ${f.record.label} | ${u.offeredMbps} | ${triple(u.receivedMbps)} | ${triple(u.jitterMs)} | ${u.lostPackets} of ${u.packets} | ${triple(u.cpuUsPerPacket)} |`);
  }
  add("");

  add("### Plot", "");
  add(`![UDP throughput per offered load and TCP throughput per system](${PLOT_FILE})`, "");
  add("Left: the median received rate for every offered load that was run (the fixed loads and the capacity search steps), on logarithmic axes. The dashed line is the offered load. Right: TCP throughput, median with min-max. A bar above the axis is cut and labelled with its value.", "");

  const errors = figures.flatMap((f) => f.record.errors.map((e) => `${f.record.label}: ${e.split("\n")[0]}`));
  if (errors.length) {
    add("### Failed measurements", "");
    for (const e of errors) add(`- ${e}`);
    add("");
  }

  renderMemory(run, add);
  renderCloud(run, add);

  add("## Running it", "");
  add(
    "```sh",
    "make bench                 # full run as root, an estimated 20 minutes on 2 idle cores",
    "make bench BENCH_QUICK=1   # smoke test of the harness, a few minutes",
    "```",
    "",
    "`make bench` installs the Debian packages it needs (wireguard-go, wireguard-tools, nebula, iperf3, gnuplot-nox), builds the program, and writes this page and its plot. Logs and the raw record (results.json) stay in a directory under /tmp, which the run prints. `node --import tsx scripts/bench/report.ts RESULTS.json` renders a record again. BENCH_PREFIX sets the namespace prefix, BENCH_ROUNDS the number of rounds, BENCH_CLOUD_NODES the fleet size, BENCH_PHASES a subset of paths, memory and cloud, and BENCH_SYSTEMS a subset of the systems by id (plain, wireguard-go, nebula-aes, nebula-chacha, cyphonic-node, cyphonic-adapter).",
    "",
  );
  const phases = Object.entries(run.phaseSeconds)
    .map(([p, s]) => `${p} ${s} s`)
    .join(", ");
  add(`Phase durations of this run: ${phases}.`, "");
  return lines.join("\n");
}

function renderMemory(run: RunRecord, add: (...lines: string[]) => void): void {
  const memory = run.memory;
  if (!memory) return;
  add("## Results: adapter memory", "");
  add(
    "The test starts a fresh `cyphonic adapter` on the host `adapter`, with the Node.js options of its systemd unit (`" + adapterNodeOptions().join(" ") + "`, read from the unit file), as every adapter in this run starts. General nodes are registered with `cyphonic admin general add` and made-up MACs, and the adapter hosts one member per general node. The resident set size is VmRSS from /proc/PID/status of the adapter's process tree, sampled once a second after each step settled.",
    `For the tunnels, ${plural(run.config.memory.tunnelPeers, "simulated peer")} on cn2 (scripts/bench/sim-tunnel-peers.ts, built from the node daemon's own Member class) request a route to every general node, and the adapter's members open the tunnels.`,
    "",
  );
  add("| general nodes | tunnels with a session | processes | RSS MB (min / median / max) | USS MB (min / median / max) |", "| --- | --- | --- | --- | --- |");
  for (const p of memory.points) {
    add(`| ${p.generalNodes} | ${p.tunnels} | ${p.processes} | ${triple(summarize(p.rssBytes.map((b) => b / MB)))} | ${triple(summarize(p.ussBytes.map((b) => b / MB)))} |`);
  }
  add("");
  add(
    "RSS is the sum of VmRSS over the adapter's processes, which the target uses. It counts pages shared with other processes (the node binary, libraries) in full, once per process.",
    "USS is the sum of the private pages (Private_Clean + Private_Dirty in /proc/PID/smaps_rollup), which leaves shared pages out. The adapter's real footprint lies between the two.",
  );
  add("");
  if (memory.errors.length) add(`Failed: ${memory.errors.map((e) => e.split("\n")[0]).join("; ")}`, "");
}

function renderCloud(run: RunRecord, add: (...lines: string[]) => void): void {
  const cloud = run.cloud;
  if (!cloud) return;
  const latencies = [...cloud.routeLatencyMs].sort((a, b) => a - b);
  add("## Results: cloud scale", "");
  add(
    `One \`cyphonic cloud\` (AS, NMS and TRS in one process) is bound to 127.0.0.1 in a namespace of its own, with its state on local disk.`,
    `A fleet of ${cloud.nodes.toLocaleString("en-US")} simulated nodes runs in one Node.js process (scripts/bench/sim-cloud-nodes.ts), each with the node daemon's own transport code and NmsLink, on its own UDP socket and loopback address.`,
    "The fleet creates its nodes and tokens in the cloud's database as `cyphonic admin` does, redeems the tokens at the AS and registers with the NMS. The nodes then send a keep-alive every 5 s, the interval the NMS states.",
    `${plural(cloud.probers, "more node")} in a second process send ${run.config.cloud.probeRatePerSecond} route requests per second to random fleet nodes for ${cloud.measureSeconds} s. Route selection latency is the time from sending the RouteRequest to receiving the RouteResponse, measured in that process over loopback. It includes the NMS's database write for a new route and its instruction to the other end.`,
    "On loopback a node has no address to report, so the NMS takes every simulated node to be behind NAPT and selects hole punching for each pair. Route selection runs the same code for every kind of route, and the simulated nodes acknowledge the instructions without building tunnels.",
    "",
  );

  const setup = cloud.setupSeconds;
  add("| figure | value |", "| --- | --- |");
  add(`| nodes | ${cloud.nodes} |`);
  if (setup) add(`| setup | creation ${fmt(setup.create)} s, provisioning ${fmt(setup.provision)} s, registration ${fmt(setup.register)} s |`);
  if (cloud.health) add(`| at the end of the window | ${cloud.health.registered} registered, ${cloud.health.fresh} with a keep-alive response in the last 12.5 s, ${cloud.health.reRegistrations} registrations repeated |`);

  add(`| cloud CPU in the window | ${cloud.cpuPercent === null ? "-" : `${cloud.cpuPercent.toFixed(1)}% of one core`} |`);
  add(`| cloud RSS MB (min / median / max) | ${triple(summarize(cloud.rssBytes.map((b) => b / MB)))} |`);
  add(`| cloud peak RSS (VmHWM) | ${cloud.peakRssBytes === null ? "-" : `${(cloud.peakRssBytes / MB).toFixed(1)} MB`} |`);
  if (latencies.length) {
    add(`| route selection latency ms, at the prober | p50 ${fmt(percentile(latencies, 50))}, p90 ${fmt(percentile(latencies, 90))}, p99 ${fmt(percentile(latencies, 99))}, max ${fmt(latencies.at(-1)!)} |`);
  }

  const select = [...(cloud.nmsSelectUs ?? [])].sort((a, b) => a - b).map((us) => us / 1000);
  if (select.length) {
    add(`| the NMS's own time per selection ms (selectUs in its log) | p50 ${fmt(percentile(select, 50))}, p90 ${fmt(percentile(select, 90))}, p99 ${fmt(percentile(select, 99))}, max ${fmt(select.at(-1)!)} |`);
  }

  const failures = Object.entries(cloud.routeErrors).map(([reason, count]) => `${count} ${reason}`);
  add(`| route requests | ${cloud.routeRequestsSent} sent, ${latencies.length} with a response, failed: ${failures.length ? failures.join(", ") : "none"} |`);
  add("");
  if (cloud.errors.length) add(`Failed: ${cloud.errors.map((e) => e.split("\n")[0]).join("; ")}`, "");
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function triple(s: Summary | null): string {
  return s ? `${fmt(s.min)} / ${fmt(s.median)} / ${fmt(s.max)}` : "-";
}

function ratioText(value: Summary | null, reference: Summary | null | undefined): string {
  if (!value || !reference || reference.median === 0) return "-";
  return (value.median / reference.median).toFixed(2);
}

if (require.main === module) {
  const [file, docsDir] = process.argv.slice(2);
  if (!file) {
    process.stderr.write("usage: node --import tsx scripts/bench/report.ts RESULTS.json [DOCS_DIR]\n");
    process.exit(2);
  }
  const run = JSON.parse(fs.readFileSync(file, "utf8")) as RunRecord;
  writeReport(run, docsDir ?? path.join(__dirname, "..", "..", "docs"), path.dirname(path.resolve(file)));
}
