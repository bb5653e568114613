// The appliance image in QEMU: boots the disk that scripts/image/disk.sh made
// on an emulated arm64 machine, and reads and writes its partitions while the
// machine is off, with mtools (FAT) and debugfs (ext4), which need no loop
// devices or mounts.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { NamespaceProcess } from "../lab/lab-process.js";

export interface DiskImage {
  /** Raw disk image: an MBR with the FAT boot partition first and the ext4 root second. */
  disk: string;
  kernel: string;
  initrd: string;
  /** Byte offsets of the two partitions in the disk image. */
  bootOffset: number;
  rootOffset: number;
  rootPartuuid: string;
}

export interface VmOptions {
  image: DiskImage;
  /** Network namespace with the two tap devices, where QEMU runs. */
  namespace: string;
  wanTap: string;
  lanTap: string;
  wanMac: string;
  lanMac: string;
  /** Directory for the serial console logs (serial-N.log) and the monitor socket. */
  workDir: string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

const POLL_MS = 500;
const POWER_OFF_GRACE_MS = 2000;

/** Runs a command and resolves with its exit code and output; rejects only when it cannot start or times out. */
export function run(argv: string[], timeoutMs = 60_000): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== "number") {
        reject(new Error(`'${argv.join(" ")}' failed: ${error.message}\n${stderr}`));
        return;
      }
      resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr });
    });
  });
}

/** Runs a command and returns its stdout. Rejects when it exits non-zero. */
export async function runChecked(argv: string[], timeoutMs = 60_000): Promise<string> {
  const result = await run(argv, timeoutMs);
  if (result.code !== 0) throw new Error(`'${argv.join(" ")}' exited with ${result.code}: ${result.stderr}`);
  return result.stdout;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads disk.env, which scripts/image/disk.sh writes beside the disk image. */
export function readDiskImage(dir: string): DiskImage {
  const values = new Map<string, string>();
  for (const line of fs.readFileSync(path.join(dir, "disk.env"), "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const value = (key: string): string => {
    const found = values.get(key);
    if (found === undefined) throw new Error(`${dir}/disk.env has no ${key}`);
    return found;
  };
  return {
    disk: path.join(dir, "disk.img"),
    kernel: path.join(dir, "vmlinuz"),
    initrd: path.join(dir, "initrd.img"),
    bootOffset: Number(value("BOOT_OFFSET")),
    rootOffset: Number(value("ROOT_OFFSET")),
    rootPartuuid: value("ROOT_PARTUUID"),
  };
}

/** Copies a file onto the FAT boot partition, as a user does on a PC. */
export async function writeBootFile(image: DiskImage, source: string, name: string): Promise<void> {
  await runChecked(["mcopy", "-o", "-i", `${image.disk}@@${image.bootOffset}`, source, `::${name}`]);
}

/** Lists the file names in the root directory of the FAT boot partition (long names). */
export async function listBootFiles(image: DiskImage): Promise<string[]> {
  const out = await runChecked(["mdir", "-b", "-i", `${image.disk}@@${image.bootOffset}`, "::/"]);
  return out
    .split("\n")
    .map((line) => line.trim().replace(/^::\//, ""))
    .filter((line) => line.length > 0);
}

function rootDevice(image: DiskImage): string {
  return `${image.disk}?offset=${image.rootOffset}`;
}

/** Returns the content of a file on the ext4 root, or null when it does not exist. */
export async function readRootFile(image: DiskImage, file: string): Promise<Buffer | null> {
  if (!(await rootFileExists(image, file))) return null;
  return new Promise((resolve, reject) => {
    execFile("debugfs", ["-R", `cat ${file}`, rootDevice(image)], { encoding: "buffer", maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`debugfs cat ${file} failed: ${stderr.toString()}`));
      else resolve(stdout);
    });
  });
}

/** Tells whether a path exists on the ext4 root. debugfs exits 0 either way, so its message decides. */
export async function rootFileExists(image: DiskImage, file: string): Promise<boolean> {
  const result = await run(["debugfs", "-R", `stat ${file}`, rootDevice(image)]);
  if (/File not found by ext2_lookup/.test(result.stderr)) return false;
  if (result.code !== 0 || !/Inode:/.test(result.stdout)) throw new Error(`debugfs stat ${file} failed: ${result.stderr}`);
  return true;
}

export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Removes terminal escape sequences (systemd's colors) from console text. */
export function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
}

/**
 * One QEMU machine: virt with a Cortex-A72, the disk on virtio-blk, and two
 * virtio NICs on tap devices, WAN first so the guest names it eth0. The kernel
 * and initramfs come from the image's root, because QEMU does not run the
 * Raspberry Pi's boot firmware.
 */
export class ApplianceVm {
  private process: NamespaceProcess | undefined;
  private bootCount = 0;

  constructor(private readonly opts: VmOptions) {}

  get monitorSocket(): string {
    return path.join(this.opts.workDir, "monitor.sock");
  }

  /** The serial console log of the current (or last) boot. */
  get serialLog(): string {
    return path.join(this.opts.workDir, `serial-${this.bootCount}.log`);
  }

  get running(): boolean {
    return this.process?.running ?? false;
  }

  /** Starts the machine. Only one runs at a time, because the test machine has two cores. */
  boot(): void {
    if (this.running) throw new Error("the virtual machine is already running");
    this.bootCount += 1;
    fs.rmSync(this.monitorSocket, { force: true });
    const { image } = this.opts;
    // pi-gen's cmdline.txt names the root by PARTUUID in the same way. The
    // journal goes to the console too, so the serial log contains the daemons' lines.
    const append = [
      `root=PARTUUID=${image.rootPartuuid}`,
      "rootfstype=ext4",
      "fsck.repair=yes",
      "rootwait",
      "console=ttyAMA0",
      "systemd.journald.forward_to_console=1",
    ].join(" ");
    const argv = [
      "qemu-system-aarch64",
      "-machine", "virt",
      "-cpu", "cortex-a72",
      "-smp", "2",
      "-m", "1024",
      "-accel", "tcg,thread=multi",
      "-nographic",
      "-serial", `file:${this.serialLog}`,
      "-monitor", `unix:${this.monitorSocket},server,nowait`,
      "-kernel", image.kernel,
      "-initrd", image.initrd,
      "-append", append,
      "-drive", `file=${image.disk},format=raw,if=none,id=disk0`,
      "-device", "virtio-blk-pci,drive=disk0",
      "-netdev", `tap,id=wan,ifname=${this.opts.wanTap},script=no,downscript=no`,
      // romfile= keeps QEMU from loading the iPXE option ROM, which only a
      // network boot needs.
      "-device", `virtio-net-pci,netdev=wan,mac=${this.opts.wanMac},addr=0x4,romfile=`,
      "-netdev", `tap,id=lan,ifname=${this.opts.lanTap},script=no,downscript=no`,
      "-device", `virtio-net-pci,netdev=lan,mac=${this.opts.lanMac},addr=0x5,romfile=`,
    ];
    this.process = new NamespaceProcess(this.opts.namespace, argv, { logFile: path.join(this.opts.workDir, `qemu-${this.bootCount}.log`) });
  }

  /** Returns the serial console of the current boot so far, without escape sequences. */
  console(): string {
    if (!fs.existsSync(this.serialLog)) return "";
    return stripAnsi(fs.readFileSync(this.serialLog, "latin1"));
  }

  /** Resolves with the first console line of this boot that matches `re`. */
  async waitForConsole(re: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const line = this.console().split(/\r?\n/).find((l) => re.test(l));
      if (line !== undefined) return line;
      if (!this.running) throw new Error(`QEMU exited before the console showed ${re}\n${this.tail()}`);
      await delay(POLL_MS);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${re} on the console\n${this.tail()}`);
  }

  /** Returns the last lines of the console, for failure messages. */
  tail(lines = 40): string {
    return this.console().split(/\r?\n/).slice(-lines).join("\n");
  }

  /** Presses the virtual power button (ACPI-less virt: a GPIO key) and waits for the guest to power off. */
  async powerOff(timeoutMs: number): Promise<void> {
    const vm = this.process;
    if (vm === undefined || !vm.running) return;
    await this.monitor("system_powerdown");
    let timer: NodeJS.Timeout | undefined;
    // The timer is cleared, because a pending one keeps the test process alive.
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const stopped = await Promise.race([vm.exited.then(() => true), timedOut]);
    clearTimeout(timer);
    if (!stopped) {
      await this.kill();
      throw new Error(`the guest did not power off within ${timeoutMs} ms\n${this.tail()}`);
    }
  }

  /** Stops QEMU at once, as pulling the plug does. */
  async kill(): Promise<void> {
    await this.process?.kill("SIGKILL");
  }

  private monitor(command: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(this.monitorSocket);
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.write(`${command}\n`);
        // The monitor sends no end-of-reply marker, and the command is queued once written.
        setTimeout(() => {
          socket.end();
          resolve();
        }, POWER_OFF_GRACE_MS);
      });
    });
  }
}
