// Packet capture inside a lab namespace with tcpdump, decoded in process.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { NamespaceProcess } from "./lab-process.js";
import { decodeFrame, type DecodedPacket } from "./packet.js";
import { parsePcap } from "./pcap.js";

export interface Capture {
  /** Path of the pcap file that tcpdump writes. */
  readonly file: string;
  /** Stops tcpdump and returns every packet it wrote, decoded. */
  stop(): Promise<DecodedPacket[]>;
}

const READY_TIMEOUT_MS = 5000;
const STOP_SETTLE_MS = 100;

/**
 * Starts tcpdump through `start` and resolves once it reports that it is
 * listening. tcpdump prints "listening on" after it has attached the filter,
 * so packets sent after this resolves are captured.
 */
export async function startCapture(
  start: (argv: string[]) => NamespaceProcess,
  iface: string,
  filter: string,
  file: string,
): Promise<Capture> {
  requireTcpdump();
  // --immediate-mode hands each packet to tcpdump at once, not when a ring
  // buffer block fills or its 1 s timeout expires. -U flushes each packet to
  // the file. -Z root keeps tcpdump from switching to a user that cannot write
  // the file. -n skips name lookups.
  const argv = ["tcpdump", "-n", "--immediate-mode", "-U", "-Z", "root", "-i", iface, "-w", file];
  if (filter.trim() !== "") {
    argv.push(filter);
  }
  const tcpdump = start(argv);
  try {
    await tcpdump.waitForLine(/listening on/, READY_TIMEOUT_MS);
  } catch (error) {
    await tcpdump.kill("SIGKILL");
    throw error;
  }

  let stopped: Promise<DecodedPacket[]> | undefined;
  return {
    file,
    stop() {
      stopped ??= (async () => {
        // tcpdump stops reading at SIGINT, so packets that arrived just before
        // stop() get time to reach the file first.
        await new Promise((resolve) => setTimeout(resolve, STOP_SETTLE_MS));
        await tcpdump.kill("SIGINT");
        return readCapture(file);
      })();
      return stopped;
    },
  };
}

/** Reads and decodes a pcap file. */
export async function readCapture(file: string): Promise<DecodedPacket[]> {
  const pcap = parsePcap(await readFile(file));
  return pcap.records.map((record) => decodeFrame(pcap.linkType, record.data, record.timeUs));
}

function requireTcpdump(): void {
  const dirs = (process.env.PATH ?? "").split(path.delimiter);
  if (!dirs.some((dir) => dir !== "" && existsSync(path.join(dir, "tcpdump")))) {
    throw new Error("tcpdump not found in PATH: install the Debian package with 'apt-get install tcpdump' or run scripts/install-deps.sh");
  }
}
