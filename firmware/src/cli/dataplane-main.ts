// Entry point of dist/dataplane.cjs, the dataplane worker's own bundle. The
// supervisor forks it with the arguments of `cyphonic dataplane`, so its
// process loads only the modules of the per-packet path.
import { runDataplaneWorker } from "../dataplane/worker.js";
import { logger } from "../util/log.js";

const [command, ...rest] = process.argv.slice(2);
if (command !== "dataplane") {
  process.stderr.write(`dataplane.cjs: expected the command "dataplane", got ${JSON.stringify(command ?? "")}; the node daemon starts this file\n`);
  process.exit(2);
}
runDataplaneWorker(rest[0] === "--tun" ? rest[1] : undefined).catch((err: unknown) => {
  // The same report as a failing command of cyphonic.cjs (firmware/src/cli/main.ts).
  logger("main").fatal({ err }, "fatal error");
  process.stderr.write(`cyphonic: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
