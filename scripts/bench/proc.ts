// Readers of /proc (proc(5)) for the CPU time and memory of the processes
// under test. PIDs are those of the root PID namespace: `ip netns exec`
// changes only the network namespace.
import { execFileSync } from "node:child_process";
import fs from "node:fs";

/** Clock ticks per second, the unit of utime and stime in /proc/PID/stat. */
const CLOCK_TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

interface StatFields {
  ppid: number;
  /** utime + stime in clock ticks, all threads of the process. */
  cpuTicks: number;
}

/** Returns the fields of /proc/PID/stat this module uses, or null when the process is gone. */
function readStat(pid: number): StatFields | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may contain spaces, so
  // the fields are counted from the last ')'. After it: state (3), ppid (4),
  // ..., utime (14), stime (15).
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { ppid: Number(rest[1]), cpuTicks: Number(rest[11]) + Number(rest[12]) };
}

/** Returns the PIDs of all live processes whose parent chain reaches one of `roots`, the roots included. */
export function processTree(roots: readonly number[]): number[] {
  const parents = new Map<number, number>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) parents.set(Number(entry), stat.ppid);
  }
  const inTree = new Set(roots.filter((pid) => parents.has(pid)));
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!inTree.has(pid) && inTree.has(ppid)) {
        inTree.add(pid);
        grew = true;
      }
    }
  }
  return [...inTree];
}

/**
 * Returns the CPU time in seconds (user + system) used so far by the
 * processes in the trees under `roots`. Threads count with their process.
 * A child that exited during a window is missed, because its time moves to
 * the parent's cutime only when reaped: the tunnel daemons keep their workers.
 */
export function cpuSeconds(roots: readonly number[]): number {
  let ticks = 0;
  for (const pid of processTree(roots)) ticks += readStat(pid)?.cpuTicks ?? 0;
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/** Returns a field of /proc/PID/status in bytes (VmRSS, VmHWM), or null when the process is gone. */
export function memoryBytes(pid: number, field: "VmRSS" | "VmHWM"): number | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  return match ? Number(match[1]) * 1024 : null;
}

/** Returns the resident set size of the processes in the trees under `roots`, in bytes. */
export function treeRssBytes(roots: readonly number[]): number {
  let total = 0;
  for (const pid of processTree(roots)) total += memoryBytes(pid, "VmRSS") ?? 0;
  return total;
}

/**
 * Returns the unique set size of the processes in the trees under `roots`,
 * in bytes: their private pages (Private_Clean + Private_Dirty in
 * /proc/PID/smaps_rollup), which no process outside the trees maps. Shared
 * pages such as the node binary's are left out, so the true footprint lies
 * between this and the RSS sum.
 */
export function treeUssBytes(roots: readonly number[]): number {
  let total = 0;
  for (const pid of processTree(roots)) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    } catch {
      // The process exited between the listing and the read.
      continue;
    }
    for (const match of text.matchAll(/^Private_(?:Clean|Dirty):\s+(\d+) kB/gm)) total += Number(match[1]) * 1024;
  }
  return total;
}

/** Returns the sum of the peak resident set sizes (VmHWM) of the processes in the trees under `roots`, in bytes. */
export function treePeakRssBytes(roots: readonly number[]): number {
  let total = 0;
  for (const pid of processTree(roots)) total += memoryBytes(pid, "VmHWM") ?? 0;
  return total;
}
