// The local control socket: a unix stream socket (mode 0600, so only root or
// the service user can read status) answering one JSON request per line.
// Requests: {"command":"status"}.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { Logger } from "./log.js";

/** Maximum request line length, in bytes. */
const MAX_REQUEST_BYTES = 4096;

export class ControlServer {
  private constructor(
    private readonly server: net.Server,
    private readonly socketPath: string,
  ) {}

  static async start(socketPath: string, status: () => unknown, log: Logger): Promise<ControlServer> {
    const answer = async (line: string): Promise<unknown> => {
      let req: { command?: string };
      try {
        req = JSON.parse(line) as { command?: string };
      } catch {
        return { error: "request is not JSON" };
      }
      if (req.command !== "status") return { error: `unknown command ${JSON.stringify(req.command)}; expected "status"` };
      try {
        return await status();
      } catch (err) {
        log.error({ err }, "status report failed");
        return { error: `status report failed: ${(err as Error).message}` };
      }
    };
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    fs.rmSync(socketPath, { force: true });
    const server = net.createServer((conn) => {
      let buf = "";
      conn.setEncoding("utf8");
      conn.on("error", () => conn.destroy());
      conn.on("data", (chunk: string) => {
        buf += chunk;
        if (buf.length > MAX_REQUEST_BYTES) {
          conn.end(JSON.stringify({ error: "request too long" }) + "\n");
          return;
        }
        const nl = buf.indexOf("\n");
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void answer(line).then((reply) => {
          if (!conn.destroyed) conn.write(JSON.stringify(reply) + "\n");
        });
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => resolve());
    });
    fs.chmodSync(socketPath, 0o600);
    log.debug({ socket: socketPath }, "control socket listening");
    return new ControlServer(server, socketPath);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    fs.rmSync(this.socketPath, { force: true });
  }
}

/** Sends one request to a control socket and returns the parsed reply. */
export function controlRequest(socketPath: string, request: object, timeoutMs = 3_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socketPath);
    let buf = "";
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`no response from ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.setEncoding("utf8");
    conn.on("connect", () => conn.write(JSON.stringify(request) + "\n"));
    conn.on("data", (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      conn.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)));
      } catch (err) {
        reject(err);
      }
    });
    conn.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach the node's control socket ${socketPath}: ${err.message}; is the node running?`));
    });
  });
}
