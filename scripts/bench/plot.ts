// The benchmark plot, drawn by gnuplot (pngcairo terminal): UDP throughput
// received per offered load for every system, next to the TCP throughput
// with its min-max range.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { SystemFigures } from "./figures.js";
import { summarize } from "./stats.js";

/** Short names for the plot legend and axis, by system id. */
const SHORT_NAMES: Record<string, string> = {
  plain: "(a) no tunnel",
  "wireguard-go": "(b) wireguard-go",
  "nebula-aes": "(c) nebula AES",
  "nebula-chacha": "(c) nebula ChaCha",
  "cyphonic-node": "(d) CYPHONIC node",
  "cyphonic-adapter": "(e) CYPHONIC adapter",
};

/** Writes the data files and the gnuplot script into workDir and renders the PNG to `output`. */
export function writePlot(figures: SystemFigures[], workDir: string, output: string, title: string): void {
  const plotDir = path.join(workDir, "plot");
  fs.mkdirSync(plotDir, { recursive: true });
  const udpSeries: string[] = [];
  for (const f of figures) {
    // Every UDP run of the system, the fixed loads and the capacity steps,
    // reduced to the median received rate per offered load.
    const byLoad = new Map<number, number[]>();
    const add = (offered: number, received: number) => {
      const key = Math.round(offered);
      byLoad.set(key, [...(byLoad.get(key) ?? []), received]);
    };
    for (const u of f.record.udp) add(u.offeredMbps, u.receivedMbps);
    for (const c of f.record.capacity) for (const s of c.steps) add(s.offeredMbps, s.receivedMbps);
    if (byLoad.size === 0) continue;
    const rows = [...byLoad.entries()].sort(([a], [b]) => a - b).map(([load, values]) => `${load} ${summarize(values)!.median}`);
    const file = path.join(plotDir, `udp-${f.record.id}.dat`);
    fs.writeFileSync(file, rows.join("\n") + "\n");
    udpSeries.push(`${JSON.stringify(file)} using 1:2 with linespoints lw 2 title ${JSON.stringify(SHORT_NAMES[f.record.id] ?? f.record.id)}`);
  }
  // The path without a tunnel is an order of magnitude faster than any
  // tunnel, so the axis ends above the fastest tunnel, and a bar past the
  // end is cut there and carries its value as a label.
  const withTcp = figures.filter((f) => f.tcpMbps);
  const tunnelMax = Math.max(0, ...withTcp.filter((f) => f.record.hasTunnel).map((f) => f.tcpMbps!.max));
  const axisMax = tunnelMax > 0 ? tunnelMax * 1.25 : Math.max(1, ...withTcp.map((f) => f.tcpMbps!.max));
  const clip = (v: number) => Math.min(v, axisMax);
  const tcpRows = withTcp.map((f) => {
    const t = f.tcpMbps!;
    const label = t.median > axisMax ? `${t.median.toFixed(0)} (off scale)` : t.median.toFixed(0);
    return `${JSON.stringify(SHORT_NAMES[f.record.id] ?? f.record.id)} ${clip(t.median)} ${clip(t.min)} ${clip(t.max)} ${JSON.stringify(label)}`;
  });
  const tcpFile = path.join(plotDir, "tcp.dat");
  fs.writeFileSync(tcpFile, tcpRows.join("\n") + "\n");

  const script = `set terminal pngcairo size 1500,620 font "sans,10"
set output ${JSON.stringify(output)}
set multiplot layout 1,2 title ${JSON.stringify(title)}
set title "UDP: received vs offered load (1200-byte datagrams, iperf3 -b)"
set logscale xy
set xlabel "offered load (Mbit/s)"
set ylabel "received (Mbit/s)"
set key top left
set grid
plot x title "offered" dashtype 2 lc rgb "gray"${udpSeries.length ? ", " + udpSeries.join(", ") : ""}
unset logscale
set title "TCP throughput (iperf3, median with min-max)"
set xlabel ""
set ylabel "Mbit/s"
set yrange [0:${axisMax}]
set style fill solid 0.6
set boxwidth 0.6
set xtics rotate by -25
unset key
${tcpRows.length ? `plot ${JSON.stringify(tcpFile)} using 0:2:xtic(1) with boxes, "" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0, "" using 0:2:5 with labels offset 0,1 font "sans,9"` : 'set label 1 "no TCP figures" at graph 0.4,0.5\nplot 0 notitle'}
unset multiplot
`;
  const scriptFile = path.join(plotDir, "plot.gp");
  fs.writeFileSync(scriptFile, script);
  execFileSync("gnuplot", [scriptFile], { stdio: ["ignore", "ignore", "pipe"] });
}
