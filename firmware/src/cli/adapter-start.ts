// The adapter's start, and what follows a fatal start error. With status LEDs
// the process stays up to show the error. When only a person can fix the
// cause (a rejected token, for example), it stays until it is stopped, so the
// token is not redeemed again. Otherwise it exits after ERROR_HOLD_MS, and
// systemd restarts it. Without LEDs it exits at once, as `cyphonic node` does.
import fs from "node:fs";
import path from "node:path";
import { AdapterConfig, AdapterDaemon } from "../adapter/adapter-daemon.js";
import { StatusLeds } from "../appliance/leds/index.js";
import { DEFAULT_BOOT_DIRS, readProvisionError } from "../appliance/provisioning/index.js";
import { AdapterStatusIndicator } from "../appliance/status/indicator.js";
import { NotProvisionedError, StartFailure, classifyStartFailure } from "../appliance/status/start-failure.js";
import { SystemdNotifier } from "../appliance/systemd-notify.js";
import { Logger } from "../util/log.js";
import { ExitStatus } from "./common.js";

/**
 * How long the error pattern stays after a start error that a restart may
 * fix (a missing LAN NIC, say) before the process exits so that systemd
 * restarts it. Long against the unit's restart delay (3 s growing to 1 min),
 * so the LEDs show the error most of the time.
 */
export const ERROR_HOLD_MS = 30_000;

export interface StartedAdapter {
  daemon: AdapterDaemon;
}

export interface FailedStart {
  /** The daemon, or null when the error came before it was constructed. */
  daemon: AdapterDaemon | null;
  err: unknown;
}

export interface FailureContext {
  stateDir: string;
  leds: StatusLeds;
  indicator: AdapterStatusIndicator;
  notifier: SystemdNotifier;
  stopSignal: Promise<NodeJS.Signals>;
  log: Logger;
  /** Hold time after a start error that a restart may fix. Default ERROR_HOLD_MS. */
  holdMs?: number;
}

/** Starts the daemon with the indicator watching it. Returns the error instead of throwing it. */
export async function startAdapter(config: AdapterConfig, indicator: AdapterStatusIndicator): Promise<StartedAdapter | FailedStart> {
  let daemon: AdapterDaemon | null = null;
  try {
    // NodeDaemon.start() redeems the token exactly when identity.json is missing.
    const provisioning = !fs.existsSync(path.join(config.stateDir, "identity.json"));
    if (provisioning && !config.tokenFile) {
      throw new NotProvisionedError(
        `the adapter is not provisioned: ${config.stateDir} has no identity.json and no token file was given; pass --token-file, or set "tokenFile" in the configuration file, to the token the operator issued`,
      );
    }
    daemon = new AdapterDaemon(config);
    daemon.events.on("lease", () => indicator.refresh());
    indicator.watch(daemon);
    indicator.setPhase(provisioning ? "provisioning" : "running");
    await daemon.start();
    indicator.setPhase("running");
    return { daemon };
  } catch (err) {
    return { daemon, err };
  }
}

/**
 * Shows the error, logs it once, releases what the daemon opened, and then
 * waits as the file header describes. Throws the error itself when no LED
 * was found, and ExitStatus(1) when the hold ends.
 */
export async function reportStartFailure(failed: FailedStart, context: FailureContext): Promise<void> {
  const { indicator, leds, log, notifier } = context;
  const failure = classifyStartFailure(failed.err);
  indicator.setPhase("failed");
  indicator.stop();
  await stopQuietly(failed.daemon, log);
  if (!leds.present) throw failed.err;

  const fields = failureFields(failure, failed.daemon, context.stateDir, log);
  if (failure.permanent) {
    log.error(fields, "adapter start failed and is not retried; the status LEDs show the error until the adapter is stopped");
    // READY=1 ends the unit's start timeout, which would otherwise restart the adapter and redeem the token again.
    notifier.ready(`start failed (${failure.code}): ${failure.message}`);
    // The daemon's sockets are closed, and signal listeners do not keep
    // Node.js running, so without this timer the process would exit here.
    const keepAlive = setInterval(() => undefined, 60_000);
    const signal = await context.stopSignal;
    clearInterval(keepAlive);
    log.info({ signal }, "stopping");
    finishStop(context);
    return;
  }

  const holdMs = context.holdMs ?? ERROR_HOLD_MS;
  log.error({ ...fields, exitInMs: holdMs }, "adapter start failed; the status LEDs show the error until the process exits to be restarted");
  let timer: NodeJS.Timeout | undefined;
  const holdEnded = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), holdMs)));
  const signal = await Promise.race([context.stopSignal, holdEnded]);
  clearTimeout(timer);
  if (signal === null) throw new ExitStatus(1);
  log.info({ signal }, "stopping");
  finishStop(context);
}

function finishStop(context: FailureContext): void {
  context.notifier.stopping();
  context.notifier.stopWatchdog();
  context.leds.restore();
}

/** Log fields of a failure, with the first-boot provisioning error when the adapter has no identity yet. */
function failureFields(failure: StartFailure, daemon: AdapterDaemon | null, stateDir: string, log: Logger): Record<string, unknown> {
  const fields: Record<string, unknown> = { code: failure.code, err: failure.message };
  if (!failure.permanent || daemon?.hasIdentity) return fields;
  try {
    // A token file on the boot partition that first-boot provisioning
    // rejected explains why no usable token reached the state directory.
    const bootFileError = readProvisionError(stateDir, DEFAULT_BOOT_DIRS);
    if (bootFileError) fields.bootFileError = bootFileError;
  } catch (err) {
    log.warn({ err, stateDir }, "could not read the first-boot provisioning error");
  }
  return fields;
}

async function stopQuietly(daemon: AdapterDaemon | null, log: Logger): Promise<void> {
  try {
    await daemon?.stop();
  } catch (err) {
    log.warn({ err }, "releasing the resources of the failed start failed");
  }
}
