// First-boot provisioning of the appliance from the token file on the FAT
// boot partition, run by cyphonic-firstboot.service before the network is
// up. It applies the file's network settings to the root file system, copies
// the token into the state directory, where the adapter redeems it at its
// first start, and retires the boot file, because the token is a secret.
//
// Crash safety: power can be cut at any point. Each step in steps.ts is
// idempotent and fsyncs what it writes, and every run starts again at the
// first step and decides from what it finds which steps remain:
// - No identity.json in the state directory: the boot file is the truth.
//   All steps run again, and a repeated step writes the same files.
// - identity.json exists: the adapter has redeemed a token. No step ever
//   writes identity.json. A boot file whose token matches the recorded hash
//   is the token this adapter redeemed (the adapter can start while this
//   command is stopped short), so it is only retired. Any other boot file is
//   reported and left in place.
// - The boot file no longer parses but has the recorded size, and the token
//   is copied: a wipe was cut off, so the wipe is repeated and the file deleted.
//
// Clock: a Raspberry Pi has no battery-backed clock, so at first boot the
// system time can be months or years behind until NTP corrects it, which
// happens only after this command, once the network is up. Provisioning does
// not depend on that time:
// - No decision of this command uses the time. Only its log lines carry it.
// - The AS checks the token's expiry against the cloud's clock. The
//   redemption request carries only the token.
// - No TLS is used, so no certificate validity period is checked. The Noise
//   handshake authenticates the AS by the static key in as_key.
// - A handshake initiation carries the sender's time, which the responder
//   only compares with the last one it accepted from the same key. A new key
//   has none, so the first redemption is accepted at any clock time.
// Other uses of the time on the appliance are described in docs/provisioning.md.
import path from "node:path";
import { formatTokenFile, parseTokenFile } from "../../node/token-file.js";
import { writeFileAtomic } from "../../util/files.js";
import { Logger } from "../../util/log.js";
import { deleteFileDurably, wipeFile } from "./boot-file.js";
import { provisionErrorPath } from "./error-file.js";
import { NetworkChanges } from "./network-settings.js";
import { ProvisionPlan, planProvisioning } from "./plan.js";
import { RootFiles, rewriteAdapterConfig, rewriteFile, rewriteFirewall, rewriteLanProfile, rewriteWanProfile, rootFiles } from "./root-files.js";
import { PROVISION_STEPS, ProvisionStep } from "./steps.js";
import { removeStaleTempFiles } from "./temp-files.js";
import { tokenRecordPath, writeTokenRecord } from "./token-record.js";

/** Name of the token file in the state directory, which `cyphonic adapter --token-file` reads. */
export const STATE_TOKEN_FILE_NAME = "token.txt";

export interface ProvisionOptions {
  /** Directories searched in order for the boot token file. */
  bootDirs: readonly string[];
  stateDir: string;
  /** Root of the file system whose network files are rewritten: "/" on the appliance. */
  rootDir: string;
  log: Logger;
  /** Called after each step that ran. The crash test hook kills the process here. */
  afterStep?: (step: ProvisionStep) => void;
}

export type ProvisionOutcome = "no-boot-file" | "provisioned" | "retired";

interface Run {
  options: ProvisionOptions;
  files: RootFiles;
  stateTokenFile: string;
  plan: ProvisionPlan;
}

/** First step after read-boot-file for each plan. The steps after it run in list order. */
const FIRST_STEP_OF_PLAN: Record<ProvisionPlan["kind"], ProvisionStep | null> = {
  none: null,
  provision: "write-wan-profile",
  retire: "wipe-boot-file",
};

const STEP_ACTIONS: Record<ProvisionStep, (run: Run) => void> = {
  "remove-stale-temp-files": (run) => {
    const { stateDir, log } = run.options;
    const targets = [...Object.values(run.files), run.stateTokenFile, tokenRecordPath(stateDir), provisionErrorPath(stateDir)];
    const removed = removeStaleTempFiles(targets);
    if (removed.length) log.warn({ files: removed }, "deleted temporary files that an interrupted run left");
  },
  "read-boot-file": (run) => {
    const { options } = run;
    run.plan = planProvisioning({ ...options, stateTokenFile: run.stateTokenFile, files: run.files });
  },
  "write-wan-profile": (run) => rewriteStep(run, run.files.wanProfile, rewriteWanProfile),
  "write-lan-profile": (run) => rewriteStep(run, run.files.lanProfile, rewriteLanProfile),
  "write-firewall": (run) => rewriteStep(run, run.files.firewall, rewriteFirewall),
  "write-adapter-config": (run) => rewriteStep(run, run.files.adapterConfig, rewriteAdapterConfig),
  "record-token-hash": (run) => {
    const plan = provisionPlan(run);
    writeTokenRecord(run.options.stateDir, { tokenSha256: plan.parsed.tokenSha256, bootFileBytes: plan.bootFileBytes });
  },
  "write-state-token": (run) => {
    const text = formatTokenFile(provisionPlan(run).parsed.token);
    // The adapter reads this file with parseTokenFile, so a copy it would reject is never written.
    parseTokenFile(text, run.stateTokenFile);
    writeFileAtomic(run.stateTokenFile, text, 0o600);
    run.options.log.info({ file: run.stateTokenFile }, "stored the provisioning token for the adapter");
  },
  "wipe-boot-file": (run) => wipeFile(bootFileOf(run)),
  "delete-boot-file": (run) => {
    deleteFileDurably(bootFileOf(run));
    run.options.log.info({ file: bootFileOf(run) }, "deleted the token file from the boot partition");
  },
};

/**
 * Runs the steps that remain for the files on disk. Throws BootTokenFileError
 * when the user must fix or remove the boot file, and other errors for
 * failures that the next run retries.
 */
export function provisionFromBootPartition(options: ProvisionOptions): ProvisionOutcome {
  const run: Run = {
    options,
    files: rootFiles(options.rootDir),
    stateTokenFile: path.join(options.stateDir, STATE_TOKEN_FILE_NAME),
    plan: { kind: "none" },
  };
  runStep(run, "remove-stale-temp-files");
  runStep(run, "read-boot-file");
  const first = FIRST_STEP_OF_PLAN[run.plan.kind];
  if (first === null) return "no-boot-file";
  for (const step of PROVISION_STEPS.slice(PROVISION_STEPS.indexOf(first))) runStep(run, step);
  return run.plan.kind === "provision" ? "provisioned" : "retired";
}

function runStep(run: Run, step: ProvisionStep): void {
  STEP_ACTIONS[step](run);
  run.options.log.debug({ step }, "provisioning step done");
  run.options.afterStep?.(step);
}

function rewriteStep(run: Run, file: string, rewrite: (text: string, changes: NetworkChanges, file: string) => string): void {
  const { network } = provisionPlan(run).parsed;
  if (rewriteFile(file, (text) => rewrite(text, network, file))) run.options.log.info({ file }, "applied the network settings of the boot token file");
}

function provisionPlan(run: Run): Extract<ProvisionPlan, { kind: "provision" }> {
  if (run.plan.kind !== "provision") throw new Error(`internal error: a provisioning step ran with the plan "${run.plan.kind}"`);
  return run.plan;
}

function bootFileOf(run: Run): string {
  if (run.plan.kind === "none") throw new Error("internal error: a retirement step ran without a boot file");
  return run.plan.bootFile;
}
