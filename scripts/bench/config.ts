// Parameters of a benchmark run. The full run makes 3 interleaved rounds
// with 10 s TCP runs and simulates 10,000 cloud nodes, which should take
// about 20 minutes on an idle 2-core machine (an estimate from quick runs).
// BENCH_QUICK=1 shrinks every phase to a smoke test of the harness, whose
// figures are not comparable.

export interface CapacityConfig {
  /** Seconds per offered load. */
  stepSeconds: number;
  /** First offered load in round 1, in Mbit/s. */
  startMbps: number;
  /** Each load that passes is multiplied by this until one fails. */
  factor: number;
  /** Halving steps (geometric midpoints) between the last passing and the first failing load. */
  bisections: number;
  /** Upper end of the search, in Mbit/s. */
  maxMbps: number;
  /** A load passes while the receiver loses at most this share of the datagrams, in percent. */
  lossLimitPercent: number;
  /** Rounds after the first start at this fraction of the capacity the same system reached before. */
  laterRoundStartFraction: number;
}

export interface BenchConfig {
  quick: boolean;
  /** Namespace prefix of the benchmark's lab. */
  prefix: string;
  /** Interleaved rounds: every round measures every system once. */
  rounds: number;
  tcpSeconds: number;
  udpSeconds: number;
  /** Offered UDP loads that must pass without loss, in Mbit/s. */
  udpLoadsMbps: number[];
  /** UDP payload per datagram. 1200 bytes fit every tunnel's MTU (1420 here), so no system fragments. */
  udpPayloadBytes: number;
  pingCount: number;
  pingIntervalSeconds: number;
  capacity: CapacityConfig;
  memory: {
    /** General node counts at which the adapter's RSS is sampled. */
    generalNodeCounts: number[];
    /** Simulated peers. Each opens a tunnel to every general node, so tunnels = peers x the last count. */
    tunnelPeers: number;
    /** RSS samples per point, one per second. */
    rssSamples: number;
  };
  cloud: {
    nodes: number;
    /** Nodes in a separate process that send the timed route requests. */
    probers: number;
    /** Route requests per second, all probers together. */
    probeRatePerSecond: number;
    /** Length of the steady-state window in which CPU, memory and route latency are measured. */
    measureSeconds: number;
    /** Provisioning and registration requests in flight at once. */
    concurrency: number;
  };
  /** Phases to run, all by default. */
  phases: Set<Phase>;
  /** Systems the paths phase measures, by id; all when empty. */
  systems: Set<SystemId>;
  /** Directory that receives benchmarks.md and benchmarks.png. */
  docsDir: string;
}

export const PHASES = ["paths", "memory", "cloud"] as const;
export type Phase = (typeof PHASES)[number];

/** The systems under test, in the order of their case letters (a) to (e). */
export const SYSTEM_IDS = ["plain", "wireguard-go", "nebula-aes", "nebula-chacha", "cyphonic-node", "cyphonic-adapter"] as const;
export type SystemId = (typeof SYSTEM_IDS)[number];

const FULL: Omit<BenchConfig, "quick" | "prefix" | "phases" | "systems" | "docsDir"> = {
  rounds: 3,
  tcpSeconds: 10,
  udpSeconds: 4,
  udpLoadsMbps: [10, 20, 30],
  udpPayloadBytes: 1200,
  pingCount: 100,
  pingIntervalSeconds: 0.01,
  capacity: { stepSeconds: 3, startMbps: 50, factor: 1.4, bisections: 2, maxMbps: 20_000, lossLimitPercent: 1, laterRoundStartFraction: 0.7 },
  memory: { generalNodeCounts: [0, 10, 100], tunnelPeers: 10, rssSamples: 5 },
  cloud: { nodes: 10_000, probers: 20, probeRatePerSecond: 20, measureSeconds: 60, concurrency: 200 },
};

const QUICK: typeof FULL = {
  rounds: 1,
  tcpSeconds: 2,
  udpSeconds: 1,
  udpLoadsMbps: [10, 20, 30],
  udpPayloadBytes: 1200,
  pingCount: 20,
  pingIntervalSeconds: 0.01,
  capacity: { stepSeconds: 1, startMbps: 50, factor: 2, bisections: 1, maxMbps: 20_000, lossLimitPercent: 1, laterRoundStartFraction: 0.7 },
  memory: { generalNodeCounts: [0, 10, 100], tunnelPeers: 1, rssSamples: 2 },
  cloud: { nodes: 300, probers: 4, probeRatePerSecond: 20, measureSeconds: 10, concurrency: 100 },
};

/**
 * Reads the configuration from the environment: BENCH_QUICK=1, BENCH_PREFIX,
 * BENCH_ROUNDS, BENCH_CLOUD_NODES, BENCH_PHASES (comma-separated: paths,
 * memory, cloud), BENCH_SYSTEMS (comma-separated system ids, for example
 * wireguard-go,cyphonic-adapter) and BENCH_DOCS_DIR.
 */
export function loadConfig(env: NodeJS.ProcessEnv, repoRoot: string): BenchConfig {
  const quick = env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true";
  const base = structuredClone(quick ? QUICK : FULL);
  const prefix = env.BENCH_PREFIX ?? "bnch1";
  // lab.sh accepts 12 characters, and the tunnel interface names "<prefix>wga" must stay within 15.
  if (!/^[a-z][a-z0-9]{1,9}$/.test(prefix)) {
    throw new Error(`invalid BENCH_PREFIX "${prefix}": expected a lowercase letter followed by 1 to 9 lowercase letters or digits`);
  }
  if (env.BENCH_ROUNDS) base.rounds = positiveInteger(env.BENCH_ROUNDS, "BENCH_ROUNDS");
  if (env.BENCH_CLOUD_NODES) base.cloud.nodes = positiveInteger(env.BENCH_CLOUD_NODES, "BENCH_CLOUD_NODES");
  const phases = new Set<Phase>();
  for (const name of (env.BENCH_PHASES ?? PHASES.join(",")).split(",").map((p) => p.trim()).filter(Boolean)) {
    if (!(PHASES as readonly string[]).includes(name)) throw new Error(`invalid BENCH_PHASES entry "${name}": expected ${PHASES.join(", ")}`);
    phases.add(name as Phase);
  }
  const systems = new Set<SystemId>();
  for (const id of (env.BENCH_SYSTEMS ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
    if (!(SYSTEM_IDS as readonly string[]).includes(id)) throw new Error(`invalid BENCH_SYSTEMS entry "${id}": expected ${SYSTEM_IDS.join(", ")}`);
    systems.add(id as SystemId);
  }
  return { ...base, quick, prefix, phases, systems, docsDir: env.BENCH_DOCS_DIR ?? `${repoRoot}/docs` };
}

function positiveInteger(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`invalid ${name} "${text}": expected a whole number of at least 1`);
  return n;
}

/**
 * Estimates the run time in seconds from the parameters and from overheads
 * seen in quick runs on a 2-core machine. A busy machine takes longer, and
 * the capacity search takes more steps for a faster system.
 */
export function estimateSeconds(c: BenchConfig, systems: number): number {
  // Start of a one-off iperf3 server, the JSON exchange and the counter reads, per run.
  const iperfOverhead = 0.3;
  const perSystemRound = c.pingCount * c.pingIntervalSeconds + 1 + c.tcpSeconds + iperfOverhead + c.udpLoadsMbps.length * (c.udpSeconds + iperfOverhead);
  // Round 1 takes about 8 steps per system from the start load, later rounds about 5.
  const capacitySteps = systems * (8 + 5 * (c.rounds - 1));
  // Each round restarts the node or the adapter on the adapter host about twice, at about 5 s each.
  const paths = c.phases.has("paths") ? 10 + c.rounds * systems * perSystemRound + capacitySteps * (c.capacity.stepSeconds + iperfOverhead) + c.rounds * 10 : 0;
  // Registering 100 general nodes and waiting for the adapter's list polls took about a minute.
  const memory = c.phases.has("memory") ? 60 + c.memory.tunnelPeers * 3 + c.memory.rssSamples * (c.memory.generalNodeCounts.length + 1) : 0;
  // 10,000 nodes took 74 s to create (the address allocation grows with the
  // square of the node count), 32 s to provision and 24 s to register.
  const thousands = c.cloud.nodes / 1000;
  const cloud = c.phases.has("cloud") ? 30 + 0.74 * thousands ** 2 + 5.6 * thousands + c.cloud.measureSeconds : 0;
  return Math.round(paths + memory + cloud);
}
