// Small UDP tool that lab tests run inside namespaces to see how NAPT
// rewrites addresses and ports. Every result is one JSON line on stdout.
//
//   udp-probe.ts listen <port> <count>
//       Binds 0.0.0.0:<port>, prints {"event":"listening","port":N}, then one
//       {"event":"datagram","address":A,"port":P,"payload":S} line per datagram,
//       and exits after <count> datagrams.
//   udp-probe.ts send <localPort> <payload> <host:port>...
//       Sends <payload> from one socket bound to <localPort> (0 picks a free
//       port) to each destination in turn, then prints
//       {"event":"sent","localPort":N,"destinations":[...]} and exits.
import dgram from "node:dgram";

function fail(message: string): never {
  console.error(`udp-probe: ${message}`);
  process.exit(2);
}

function parsePort(text: string | undefined, name: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`invalid ${name} '${text}': expected an integer from 0 to 65535`);
  }
  return port;
}

function listen(port: number, count: number): void {
  const socket = dgram.createSocket("udp4");
  let received = 0;
  socket.on("message", (message, remote) => {
    received += 1;
    const line = { event: "datagram", address: remote.address, port: remote.port, payload: message.toString("utf8") };
    console.log(JSON.stringify(line));
    if (received >= count) {
      socket.close();
    }
  });
  socket.on("error", (error) => fail(`socket error: ${error.message}`));
  socket.bind(port, "0.0.0.0", () => {
    console.log(JSON.stringify({ event: "listening", port: socket.address().port }));
  });
}

async function send(localPort: number, payload: string, destinations: string[]): Promise<void> {
  const socket = dgram.createSocket("udp4");
  socket.on("error", (error) => fail(`socket error: ${error.message}`));
  await new Promise<void>((resolve) => socket.bind(localPort, "0.0.0.0", resolve));
  for (const destination of destinations) {
    const separator = destination.lastIndexOf(":");
    if (separator < 0) {
      fail(`invalid destination '${destination}': expected host:port`);
    }
    const host = destination.slice(0, separator);
    const port = parsePort(destination.slice(separator + 1), "destination port");
    await new Promise<void>((resolve, reject) =>
      socket.send(payload, port, host, (error) => (error ? reject(error) : resolve())),
    );
  }
  console.log(JSON.stringify({ event: "sent", localPort: socket.address().port, destinations }));
  socket.close();
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "listen" && args.length === 2) {
  const count = Number(args[1]);
  if (!Number.isInteger(count) || count < 1) {
    fail(`invalid count '${args[1]}': expected a positive integer`);
  }
  listen(parsePort(args[0], "port"), count);
} else if (mode === "send" && args.length >= 3) {
  send(parsePort(args[0], "local port"), args[1]!, args.slice(2)).catch((error: unknown) => fail(String(error)));
} else {
  fail("usage: udp-probe.ts listen <port> <count> | send <localPort> <payload> <host:port>...");
}
