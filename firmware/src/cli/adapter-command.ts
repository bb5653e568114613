// `cyphonic adapter`: the node daemon that also serves the general nodes on
// a LAN NIC, configured by a JSON file and flags, with its state shown on
// the status LEDs (docs/leds.md, docs/config.md).
import { parseArgs } from "node:util";
import { AdapterConfig } from "../adapter/adapter-daemon.js";
import {
  ADAPTER_CONFIG_DEFAULTS,
  AdapterConfigError,
  AdapterSettings,
  LOG_LEVELS,
  MAX_LEASE_SECONDS,
  MIN_LEASE_SECONDS,
  mergeAdapterConfig,
  parseAdapterFlags,
  readAdapterConfigFile,
} from "../appliance/config/index.js";
import { StatusLeds } from "../appliance/leds/index.js";
import { AdapterStatusIndicator } from "../appliance/status/indicator.js";
import { SystemdNotifier } from "../appliance/systemd-notify.js";
import { CRASH_HOOK_VARIABLE, installRedemptionCrashHook } from "../node/provision.js";
import { logger, setDefaultLogLevel } from "../util/log.js";
import { ExitStatus, UsageError, waitForSignal } from "./common.js";
import { StartedAdapter, reportStartFailure, startAdapter } from "./adapter-start.js";

export const ADAPTER_USAGE = `cyphonic adapter --config FILE [options]
cyphonic adapter --state DIR --lan IFACE [options]
  --config FILE            JSON configuration file with the settings below (docs/config.md);
                           a flag overrides the file's key
  --state DIR              identity, keys and leases (created 0700)
  --token-file FILE        provisioning token, needed on first start only; deleted once used
  --lan IFACE              the NIC towards the general nodes (DHCP, DNS, forwarding)
  --port N                 UDP port for signaling and tunnels (default ${ADAPTER_CONFIG_DEFAULTS.port}, 0 = any)
  --tun NAME               TUN interface name (default ${ADAPTER_CONFIG_DEFAULTS.tunName})
  --control PATH           control socket (default ${ADAPTER_CONFIG_DEFAULTS.controlSocket})
  --dns-listen ADDR:PORT   resolver address, repeatable (default: the virtual IP, port 53)
  --dns-upstream ADDR:PORT resolver for non-overlay names (default: none, answered REFUSED)
  --lease-seconds N        DHCP lease time in seconds, ${MIN_LEASE_SECONDS} to ${MAX_LEASE_SECONDS} (default ${ADAPTER_CONFIG_DEFAULTS.leaseSeconds})
  --led-root DIR           LED class directory with the ACT and PWR LEDs (default ${ADAPTER_CONFIG_DEFAULTS.ledRoot});
                           without them the adapter runs with no status LEDs
  --log-level LEVEL        ${LOG_LEVELS.join(", ")} (default ${ADAPTER_CONFIG_DEFAULTS.logLevel});
                           the environment variable CYPHONIC_LOG_LEVEL overrides it
  --allow-crash-hook       for tests only: honour ${CRASH_HOOK_VARIABLE}=STEP, which kills
                           the process with SIGKILL right after that token redemption step`;

/** Runs the adapter until SIGINT or SIGTERM, showing its state on the status LEDs, and restores the LEDs on exit. */
export async function runAdapter(argv: string[]): Promise<void> {
  const { settings, allowCrashHook } = parseAdapterArguments(argv);
  setDefaultLogLevel(settings.logLevel);
  const log = logger("adapter");
  try {
    installRedemptionCrashHook(process.env[CRASH_HOOK_VARIABLE], allowCrashHook, log);
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(err.message, ADAPTER_USAGE);
    throw err;
  }

  const leds = StatusLeds.open({ ledClassDir: settings.ledRoot });
  // restore() is synchronous, so it also runs on process.exit() from main.
  process.on("exit", () => leds.restore());
  const indicator = new AdapterStatusIndicator(leds);
  indicator.refresh();

  // Installed before the start, which can wait minutes for the cloud, so a
  // stop during it still restores the LEDs.
  const stopSignal = waitForSignal();
  // Under systemd (Type=notify), the watchdog starts before the first start,
  // and READY=1 follows a complete start.
  const notifier = SystemdNotifier.fromEnvironment();
  notifier.startWatchdog(() => true);

  const started = await Promise.race([startAdapter(adapterConfigOf(settings), indicator), stopSignal.then((signal) => ({ signal }))]);
  if ("signal" in started) {
    log.info({ signal: started.signal }, "stopping before the start finished");
    throw new ExitStatus(0);
  }
  if ("err" in started) {
    await reportStartFailure(started, { stateDir: settings.stateDir, leds, indicator, notifier, stopSignal, log });
    return;
  }
  await runUntilStopped(started, notifier, indicator, leds, stopSignal);
}

async function runUntilStopped(
  started: StartedAdapter,
  notifier: SystemdNotifier,
  indicator: AdapterStatusIndicator,
  leds: StatusLeds,
  stopSignal: Promise<NodeJS.Signals>,
): Promise<void> {
  notifier.ready("adapter running");
  const signal = await stopSignal;
  logger("adapter").info({ signal }, "stopping");
  notifier.stopping();
  indicator.stop();
  await started.daemon.stop();
  notifier.stopWatchdog();
  leds.restore();
}

/** Reads --config and the flags. A flag error is a UsageError, so the usage is printed with it. */
export function loadAdapterSettings(argv: string[]): AdapterSettings {
  return parseAdapterArguments(argv).settings;
}

/** Reads the settings as loadAdapterSettings does, and the test-only --allow-crash-hook flag, which is not an adapter setting. */
function parseAdapterArguments(argv: string[]): { settings: AdapterSettings; allowCrashHook: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: "string" },
      state: { type: "string" },
      "token-file": { type: "string" },
      lan: { type: "string" },
      port: { type: "string" },
      tun: { type: "string" },
      control: { type: "string" },
      "dns-listen": { type: "string", multiple: true },
      "dns-upstream": { type: "string" },
      "lease-seconds": { type: "string" },
      "led-root": { type: "string" },
      "log-level": { type: "string" },
      "allow-crash-hook": { type: "boolean" },
    },
    strict: true,
  });
  const file = values.config ?? null;
  try {
    const fromFile = file === null ? null : readAdapterConfigFile(file);
    const settings = mergeAdapterConfig(fromFile, file, parseAdapterFlags(values));
    return { settings, allowCrashHook: values["allow-crash-hook"] ?? false };
  } catch (err) {
    if (err instanceof AdapterConfigError && err.file === null) throw new UsageError(err.message, ADAPTER_USAGE);
    throw err;
  }
}

function adapterConfigOf(settings: AdapterSettings): AdapterConfig {
  return {
    stateDir: settings.stateDir,
    tokenFile: settings.tokenFile,
    port: settings.port,
    tunName: settings.tunName,
    controlSocket: settings.controlSocket,
    dnsListen: settings.dnsListen,
    dnsUpstream: settings.dnsUpstream,
    lanInterface: settings.lanInterface,
    leaseSeconds: settings.leaseSeconds,
  };
}
