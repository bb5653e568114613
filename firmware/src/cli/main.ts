// The `cyphonic` program: one binary, a subcommand per role.
import { AdapterConfigError } from "../appliance/config/index.js";
import { NotProvisionedError } from "../appliance/status/start-failure.js";
import { SettingsError } from "../cloud/settings.js";
import { ProvisioningError } from "../node/provision.js";
import { TokenFileError } from "../node/token-file.js";
import { logger, setDefaultLogLevel } from "../util/log.js";
import { ExitStatus, UsageError } from "./common.js";

// Each command's module is imported when the command runs, and esbuild
// evaluates a dynamically imported module only then. So the adapter and the
// node daemon do not load the cloud services, their SQLite store or
// better-sqlite3.

/** Returns the help text, which imports every command's module for its usage. */
async function usage(): Promise<string> {
  const [{ CLOUD_USAGE }, { ADMIN_USAGE }, { NODE_USAGE, STATUS_USAGE }, { ADAPTER_USAGE }, { APPLIANCE_PROVISION_USAGE }] = await Promise.all([
    import("./cloud-command.js"),
    import("./admin-command.js"),
    import("./node-command.js"),
    import("./adapter-command.js"),
    import("./appliance-command.js"),
  ]);
  return `usage: cyphonic COMMAND [options]

commands:
  cloud     run AS, NMS and TRS in one process
  as|nms|trs  run one cloud service
  admin     operator commands: nodes and provisioning tokens
  node      run the node daemon
  adapter   run the node daemon and serve unmodified devices on a LAN NIC
  status    show a running node's tunnels and counters
  appliance-provision  first boot of the appliance: apply the token file on the boot partition

${CLOUD_USAGE}

${ADMIN_USAGE}

${NODE_USAGE}

${ADAPTER_USAGE}

${STATUS_USAGE}

${APPLIANCE_PROVISION_USAGE}
`;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "cloud":
    case "as":
    case "nms":
    case "trs":
      return (await import("./cloud-command.js")).runCloud(command, rest);
    case "admin":
      setDefaultLogLevel("warn");
      return (await import("./admin-command.js")).runAdmin(rest);
    case "node":
      return (await import("./node-command.js")).runNode(rest);
    case "adapter":
      return (await import("./adapter-command.js")).runAdapter(rest);
    case "status":
      setDefaultLogLevel("warn");
      return (await import("./node-command.js")).runStatus(rest);
    case "appliance-provision":
      return (await import("./appliance-command.js")).runApplianceProvision(rest);
    case "dataplane":
      // Internal: the node daemon starts its dataplane worker with this
      // command when it runs from source. The bundle forks dist/dataplane.cjs.
      return (await import("../dataplane/worker.js")).runDataplaneWorker(rest[0] === "--tun" ? rest[1] : undefined);
    case "help":
    case "--help":
    case "-h":
    case undefined:
      process.stdout.write(await usage());
      return;
    default:
      throw new UsageError(`unknown command "${command}"`, await usage());
  }
}

main(process.argv.slice(2)).then(
  // Exits once stdout has drained: stdout on a pipe is asynchronous, and an
  // exit right away cut `cyphonic status --json` at 64 KiB.
  () => process.stdout.write("", () => process.exit(0)),
  (err: unknown) => {
    if (err instanceof ExitStatus) process.exit(err.status);
    if (err instanceof UsageError) {
      process.stderr.write(`cyphonic: ${err.message}\n${err.usage ? `\n${err.usage}\n` : ""}`);
      process.exit(2);
    }
    // node:util parseArgs rejects unknown or malformed flags with these codes.
    if (err instanceof TypeError && String((err as NodeJS.ErrnoException).code).startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`cyphonic: ${err.message}; see "cyphonic help"\n`);
      process.exit(2);
    }
    // Errors that a restart cannot fix. cyphonic-adapter.service does not restart on status 2.
    if (
      err instanceof TokenFileError ||
      err instanceof ProvisioningError ||
      err instanceof SettingsError ||
      err instanceof AdapterConfigError ||
      err instanceof NotProvisionedError
    ) {
      process.stderr.write(`cyphonic: ${(err as Error).message}\n`);
      logger("main").error({ err }, "fatal error");
      process.exit(2);
    }
    logger("main").fatal({ err }, "fatal error");
    process.stderr.write(`cyphonic: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
