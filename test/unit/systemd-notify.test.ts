import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import koffi from "koffi";
import { SystemdNotifier } from "../../firmware/src/appliance/systemd-notify.js";
import { encodeUnixSocketAddress, UnixDatagramError } from "../../firmware/src/appliance/unix-datagram.js";
import { Counters } from "../../firmware/src/util/counters.js";

// The receiving socket is set up here with its own constants and sockaddr_un
// encoding, apart from the code under test, so that a wrong address length on
// both sides cannot cancel out.
const AF_UNIX = 1;
const SOCK_DGRAM = process.arch === "mips" || process.arch === "mipsel" ? 1 : 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const SUN_FAMILY_BYTES = 2;
const SUN_PATH_BYTES = 108;
const execFileAsync = promisify(execFile);
// Larger than systemd's 4096-byte notification buffer, so an oversized message would show.
const RECEIVE_BUFFER_BYTES = 8192;

interface ReceiverLibc {
  socket: (domain: number, type: number, protocol: number) => number;
  bind: (fd: number, address: Buffer, length: number) => number;
  recv: (fd: number, buffer: Buffer, length: number, flags: number) => number;
  close: (fd: number) => number;
}

let receiverLibc: ReceiverLibc | undefined;

function loadReceiverLibc(): ReceiverLibc {
  if (receiverLibc) return receiverLibc;
  const lib = koffi.load(null);
  receiverLibc = {
    socket: lib.func("int socket(int domain, int type, int protocol)") as ReceiverLibc["socket"],
    bind: lib.func("int bind(int fd, const void *addr, uint32_t addrlen)") as ReceiverLibc["bind"],
    recv: lib.func("intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)") as ReceiverLibc["recv"],
    close: lib.func("int close(int fd)") as ReceiverLibc["close"],
  };
  return receiverLibc;
}

function errnoName(): string {
  const errno = koffi.errno();
  const entry = Object.entries(os.constants.errno).find(([, value]) => value === errno);
  return entry ? entry[0] : `errno ${errno}`;
}

/** A bound AF_UNIX SOCK_DGRAM socket that the test polls without blocking. */
class DatagramReceiver {
  private closed = false;

  private constructor(private readonly fd: number) {}

  /** Binds a filesystem socket at `socketPath`. The address length counts the path and its NUL terminator. */
  static bindPath(socketPath: string): DatagramReceiver {
    const pathBytes = Buffer.from(socketPath, "utf8");
    return DatagramReceiver.bind(pathBytes, SUN_FAMILY_BYTES + pathBytes.length + 1);
  }

  /** Binds the abstract name `name`. The address length counts the leading NUL and the name, nothing more. */
  static bindAbstract(name: string): DatagramReceiver {
    const sunPath = Buffer.concat([Buffer.of(0), Buffer.from(name, "utf8")]);
    return DatagramReceiver.bind(sunPath, SUN_FAMILY_BYTES + sunPath.length);
  }

  private static bind(sunPath: Buffer, addressLength: number): DatagramReceiver {
    const calls = loadReceiverLibc();
    const sockaddr = Buffer.alloc(SUN_FAMILY_BYTES + SUN_PATH_BYTES);
    if (os.endianness() === "LE") sockaddr.writeUInt16LE(AF_UNIX, 0);
    else sockaddr.writeUInt16BE(AF_UNIX, 0);
    sunPath.copy(sockaddr, SUN_FAMILY_BYTES);

    const fd = calls.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new Error(`socket() for the test receiver failed: ${errnoName()}`);
    if (calls.bind(fd, sockaddr, addressLength) !== 0) {
      const code = errnoName();
      calls.close(fd);
      throw new Error(`bind() for the test receiver failed: ${code}`);
    }
    return new DatagramReceiver(fd);
  }

  /** Returns the next queued datagram, or null when the queue is empty. */
  tryReceive(): Buffer | null {
    const buffer = Buffer.alloc(RECEIVE_BUFFER_BYTES);
    const received = loadReceiverLibc().recv(this.fd, buffer, buffer.length, MSG_DONTWAIT);
    if (received >= 0) return buffer.subarray(0, received);
    const code = errnoName();
    if (code === "EAGAIN" || code === "EWOULDBLOCK") return null;
    throw new Error(`recv() on the test receiver failed: ${code}`);
  }

  /** Waits for the next datagram and rejects after `timeoutMs`. */
  async receive(timeoutMs = 2000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const datagram = this.tryReceive();
      if (datagram) return datagram;
      await sleep(5);
    }
    throw new Error(`no datagram arrived within ${timeoutMs} ms`);
  }

  /** Collects the datagrams that arrive during `durationMs`, as UTF-8 text. */
  async collect(durationMs: number): Promise<string[]> {
    const messages: string[] = [];
    const deadline = Date.now() + durationMs;
    while (Date.now() < deadline) {
      this.drainInto(messages);
      await sleep(5);
    }
    this.drainInto(messages);
    return messages;
  }

  /** Discards the queued datagrams and returns how many there were. */
  drain(): number {
    const messages: string[] = [];
    this.drainInto(messages);
    return messages.length;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    loadReceiverLibc().close(this.fd);
  }

  private drainInto(messages: string[]): void {
    for (let datagram = this.tryReceive(); datagram; datagram = this.tryReceive()) {
      messages.push(datagram.toString("utf8"));
    }
  }
}

let tempDir = "";
let socketCount = 0;
const receivers: DatagramReceiver[] = [];

before(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), "cyphonic-notify-"));
});

after(() => {
  for (const receiver of receivers) receiver.close();
  fs.rmSync(tempDir, { recursive: true, force: true });
});

function newSocketPath(): string {
  socketCount++;
  return path.join(tempDir, `notify-${socketCount}.sock`);
}

function bindPathReceiver(): { receiver: DatagramReceiver; socketPath: string } {
  const socketPath = newSocketPath();
  const receiver = DatagramReceiver.bindPath(socketPath);
  receivers.push(receiver);
  return { receiver, socketPath };
}

function randomAbstractName(): string {
  return `cyphonic-notify-test-${process.pid}-${randomBytes(6).toString("hex")}`;
}

describe("encodeUnixSocketAddress", () => {
  test("path counts NUL terminator", () => {
    const address = encodeUnixSocketAddress("/run/systemd/notify");
    const family = os.endianness() === "LE" ? address.sockaddr.readUInt16LE(0) : address.sockaddr.readUInt16BE(0);
    assert.equal(family, AF_UNIX);
    assert.equal(address.length, SUN_FAMILY_BYTES + "/run/systemd/notify".length + 1);
    assert.equal(address.sockaddr.toString("utf8", SUN_FAMILY_BYTES, address.length - 1), "/run/systemd/notify");
    assert.equal(address.sockaddr[address.length - 1], 0);
  });

  test("abstract name counts used bytes", () => {
    const address = encodeUnixSocketAddress("@abc");
    assert.equal(address.length, SUN_FAMILY_BYTES + 1 + 3);
    assert.equal(address.sockaddr[SUN_FAMILY_BYTES], 0);
    assert.equal(address.sockaddr.toString("utf8", SUN_FAMILY_BYTES + 1, address.length), "abc");
  });

  test("longest names fit sun_path", () => {
    const longestPath = `/${"p".repeat(SUN_PATH_BYTES - 2)}`;
    assert.equal(encodeUnixSocketAddress(longestPath).length, SUN_FAMILY_BYTES + SUN_PATH_BYTES);
    const longestAbstract = `@${"a".repeat(SUN_PATH_BYTES - 1)}`;
    assert.equal(encodeUnixSocketAddress(longestAbstract).length, SUN_FAMILY_BYTES + SUN_PATH_BYTES);
  });

  test("invalid names rejected", () => {
    const invalidNames = [
      "relative/notify.sock",
      "",
      "@",
      "vsock:2:1234",
      "/run/with\0nul",
      `/${"p".repeat(SUN_PATH_BYTES - 1)}`,
      `@${"a".repeat(SUN_PATH_BYTES)}`,
    ];
    for (const name of invalidNames) {
      assert.throws(
        () => encodeUnixSocketAddress(name),
        (err: unknown) => err instanceof UnixDatagramError && err.code === "INVALID_ADDRESS",
        `expected INVALID_ADDRESS for ${JSON.stringify(name)}`,
      );
    }
  });
});

describe("SystemdNotifier messages", () => {
  test("ready sends exact bytes", async () => {
    const { receiver, socketPath } = bindPathReceiver();
    const counters = new Counters();
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath }, { counters });
    assert.equal(notifier.enabled, true);

    notifier.ready("serving 3 peers");
    assert.deepEqual(await receiver.receive(), Buffer.from("READY=1\nSTATUS=serving 3 peers", "utf8"));
    notifier.ready();
    assert.deepEqual(await receiver.receive(), Buffer.from("READY=1", "utf8"));
    assert.equal(counters.get("systemd.notify.sent"), 2);
    assert.equal(notifier.counters, counters);
  });

  test("status, stopping and watchdog", async () => {
    const { receiver, socketPath } = bindPathReceiver();
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath });

    notifier.status("waiting for the authentication service");
    assert.equal((await receiver.receive()).toString("utf8"), "STATUS=waiting for the authentication service");
    notifier.stopping();
    assert.equal((await receiver.receive()).toString("utf8"), "STOPPING=1");
    notifier.watchdog();
    assert.equal((await receiver.receive()).toString("utf8"), "WATCHDOG=1");
    assert.equal(notifier.counters.get("systemd.notify.sent"), 3);
  });

  test("status line breaks become spaces", async () => {
    const { receiver, socketPath } = bindPathReceiver();
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath });

    notifier.status("one\nREADY=1\r\0two");
    assert.equal((await receiver.receive()).toString("utf8"), "STATUS=one READY=1  two");
  });

  test("long status cut to 4096 bytes", async () => {
    const { receiver, socketPath } = bindPathReceiver();
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath });

    // "é" is 2 bytes in UTF-8. 4096 bytes less "READY=1\nSTATUS=" (15) leave
    // room for 2040 whole characters, and the 2041st would be split.
    notifier.ready("é".repeat(3000));
    const datagram = await receiver.receive();
    assert.equal(datagram.length, 15 + 2040 * 2);
    assert.equal(datagram.toString("utf8"), `READY=1\nSTATUS=${"é".repeat(2040)}`);
    assert.equal(notifier.counters.get("systemd.notify.status_truncated"), 1);
  });

  test("abstract socket name", async () => {
    const name = randomAbstractName();
    const receiver = DatagramReceiver.bindAbstract(name);
    receivers.push(receiver);
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: `@${name}` });

    notifier.ready("abstract");
    assert.equal((await receiver.receive()).toString("utf8"), "READY=1\nSTATUS=abstract");
    assert.equal(notifier.counters.get("systemd.notify.sent"), 1);
  });

  test("unset socket disables notifier", async () => {
    const { receiver, socketPath } = bindPathReceiver();
    for (const env of [{ WATCHDOG_USEC: "2000000" }, { NOTIFY_SOCKET: "", WATCHDOG_USEC: "2000000" }]) {
      const notifier = SystemdNotifier.fromEnvironment(env);
      assert.equal(notifier.enabled, false);
      assert.equal(notifier.watchdogIntervalMs, null);

      notifier.ready("unused");
      notifier.status("unused");
      notifier.stopping();
      notifier.watchdog();
      notifier.startWatchdog(() => true);
      notifier.stopWatchdog();
      assert.deepEqual(notifier.counters.snapshot(), {});
    }
    // A working notifier on the same receiver shows that the receiver would see a message.
    assert.deepEqual(await receiver.collect(50), []);
    SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath }).stopping();
    assert.equal((await receiver.receive()).toString("utf8"), "STOPPING=1");
  });
});

describe("SystemdNotifier failures", () => {
  test("missing socket path counted", () => {
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: path.join(tempDir, "missing.sock") });
    assert.equal(notifier.enabled, true);

    assert.doesNotThrow(() => notifier.ready("starting"));
    assert.doesNotThrow(() => notifier.watchdog());
    assert.equal(notifier.counters.get("systemd.notify.failed.enoent"), 2);
    assert.equal(notifier.counters.get("systemd.notify.sent"), 0);
  });

  test("closed receiver counted as refused", () => {
    const socketPath = newSocketPath();
    // Closing the socket leaves its file behind, and nothing receives on it.
    DatagramReceiver.bindPath(socketPath).close();
    assert.equal(fs.statSync(socketPath).isSocket(), true);
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath });

    assert.doesNotThrow(() => notifier.ready());
    assert.equal(notifier.counters.get("systemd.notify.failed.econnrefused"), 1);
  });

  test("unbound abstract name refused", () => {
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: `@${randomAbstractName()}` });

    assert.doesNotThrow(() => notifier.stopping());
    assert.equal(notifier.counters.get("systemd.notify.failed.econnrefused"), 1);
  });

  test("invalid address counted", () => {
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: "relative/notify.sock" });
    assert.equal(notifier.enabled, true);

    assert.doesNotThrow(() => notifier.ready());
    assert.equal(notifier.counters.get("systemd.notify.failed.invalid_address"), 1);
    assert.equal(notifier.counters.get("systemd.notify.sent"), 0);
  });

  test("unwritable socket counted as EACCES", async () => {
    // Root bypasses file permissions, so as root the notifier runs in a child
    // process with the uid of "nobody".
    const uid = process.getuid?.() ?? 0;
    const senderUid = uid === 0 ? NOBODY_UID : uid;
    const socketDir = path.join(tempDir, "eacces");
    fs.mkdirSync(socketDir, { mode: 0o755 });
    fs.chmodSync(socketDir, 0o755);
    const socketPath = path.join(socketDir, "notify.sock");
    const receiver = DatagramReceiver.bindPath(socketPath);
    receivers.push(receiver);
    // Connecting to a unix socket needs write permission on its file.
    fs.chmodSync(socketPath, 0o000);

    const counters = await runNotifierAs(senderUid, socketPath);
    assert.equal(counters["systemd.notify.failed.eacces"], 1, `counters: ${JSON.stringify(counters)}`);
    assert.equal(counters["systemd.notify.sent"], undefined);
    assert.deepEqual(await receiver.collect(20), []);
  });
});

const NOBODY_UID = 65534;

/** Runs ready() in a child process with `uid` and returns its counters. The child exits non-zero when ready() throws. */
async function runNotifierAs(uid: number, socketPath: string): Promise<Record<string, number>> {
  const repoRoot = path.resolve(__dirname, "..", "..");
  const modulePath = path.join(repoRoot, "firmware", "src", "appliance", "systemd-notify.ts");
  const script = [
    `const { SystemdNotifier } = require(${JSON.stringify(modulePath)});`,
    `const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: ${JSON.stringify(socketPath)} });`,
    "notifier.ready();",
    "process.stdout.write(JSON.stringify(notifier.counters.snapshot()));",
  ].join("\n");
  const { stdout } = await execFileAsync(process.execPath, ["--import", "tsx", "-e", script], {
    uid,
    // The working directory must contain node_modules, so that --import finds tsx.
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? "", CYPHONIC_LOG_LEVEL: "error" },
    timeout: 30_000,
  });
  return JSON.parse(stdout) as Record<string, number>;
}

describe("SystemdNotifier watchdog", () => {
  test("interval from environment", () => {
    const socketPath = path.join(tempDir, "unused.sock");
    const cases: Array<{ env: Record<string, string>; expectedMs: number | null }> = [
      { env: { WATCHDOG_USEC: "2000000" }, expectedMs: 1000 },
      { env: { WATCHDOG_USEC: "2000000", WATCHDOG_PID: String(process.pid) }, expectedMs: 1000 },
      { env: { WATCHDOG_USEC: "2000000", WATCHDOG_PID: String(process.pid + 1) }, expectedMs: null },
      { env: { WATCHDOG_USEC: "2000000", WATCHDOG_PID: "main" }, expectedMs: null },
      { env: { WATCHDOG_USEC: "30000000" }, expectedMs: 15_000 },
      { env: { WATCHDOG_USEC: "1" }, expectedMs: 1 },
      // 100 days: half of it exceeds the longest delay of a Node.js timer.
      { env: { WATCHDOG_USEC: String(100 * 86_400 * 1_000_000) }, expectedMs: 2 ** 31 - 1 },
      { env: {}, expectedMs: null },
      { env: { WATCHDOG_USEC: "" }, expectedMs: null },
      { env: { WATCHDOG_USEC: "0" }, expectedMs: null },
      { env: { WATCHDOG_USEC: "-2000000" }, expectedMs: null },
      { env: { WATCHDOG_USEC: "2s" }, expectedMs: null },
      // USEC_INFINITY, which systemd rejects.
      { env: { WATCHDOG_USEC: "18446744073709551615" }, expectedMs: null },
    ];
    for (const { env, expectedMs } of cases) {
      const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath, ...env });
      assert.equal(notifier.watchdogIntervalMs, expectedMs, `watchdogIntervalMs for ${JSON.stringify(env)}`);
    }
  });

  test("sends only while healthy", async () => {
    const { receiver, socketPath } = bindPathReceiver();
    // 60 ms of WATCHDOG_USEC gives one check every 30 ms.
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: "60000" });
    assert.equal(notifier.watchdogIntervalMs, 30);
    let healthy = true;
    notifier.startWatchdog(() => healthy);

    try {
      const healthyMessages = await receiver.collect(200);
      assert.ok(healthyMessages.length >= 3, `expected at least 3 messages in 200 ms, got ${healthyMessages.length}`);
      assert.deepEqual(new Set(healthyMessages), new Set(["WATCHDOG=1"]));

      healthy = false;
      // Datagrams sent before the change are still queued, so they are discarded.
      receiver.drain();
      const unhealthyMessages = await receiver.collect(200);
      assert.deepEqual(unhealthyMessages, []);
      assert.ok(notifier.counters.get("systemd.watchdog.unhealthy") >= 3, "expected at least 3 failed checks in 200 ms");

      healthy = true;
      const recoveredMessages = await receiver.collect(150);
      assert.ok(recoveredMessages.length >= 2, `expected messages again after recovery, got ${recoveredMessages.length}`);
    } finally {
      notifier.stopWatchdog();
    }

    receiver.drain();
    assert.deepEqual(await receiver.collect(150), []);
  });

  test("throwing check counts unhealthy", async () => {
    const { receiver, socketPath } = bindPathReceiver();
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: "60000" });

    // The first check runs inside startWatchdog, so a throw there must be caught.
    assert.doesNotThrow(() =>
      notifier.startWatchdog(() => {
        throw new Error("health check failed");
      }),
    );
    try {
      assert.equal(notifier.counters.get("systemd.watchdog.unhealthy"), 1);
      assert.deepEqual(await receiver.collect(100), []);
      assert.ok(notifier.counters.get("systemd.watchdog.unhealthy") >= 3, "expected the timer to keep checking");
    } finally {
      notifier.stopWatchdog();
    }
  });

  test("no interval sends nothing", async () => {
    const { receiver, socketPath } = bindPathReceiver();
    const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: socketPath });
    assert.equal(notifier.watchdogIntervalMs, null);

    notifier.startWatchdog(() => true);
    assert.deepEqual(await receiver.collect(100), []);
    assert.equal(notifier.counters.get("systemd.notify.sent"), 0);
  });
});
