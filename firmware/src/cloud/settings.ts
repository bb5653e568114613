// Settings fixed when a cloud state directory is first used: the overlay
// domain and the virtual IP pool. Node FQDNs and addresses derive from them,
// so a later start (or admin command) with other values is rejected instead
// of silently renaming or renumbering every node.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../util/files.js";
import { DEFAULT_OVERLAY_DOMAIN, DEFAULT_POOL, overlayDomainSchema, poolSchema } from "./config.js";

/** A settings value that is invalid or conflicts with the stored one; the message names the fix. */
export class SettingsError extends Error {
  override readonly name = "SettingsError";
}

const settingsSchema = z.object({ overlayDomain: z.string(), pool: z.string() });
export type CloudSettings = z.infer<typeof settingsSchema>;

/** Reads the fixed settings of a state directory the cloud has already used; for admin commands. */
export function readSettings(stateDir: string): CloudSettings {
  if (!fs.existsSync(path.join(stateDir, "settings.json"))) {
    throw new SettingsError(`no cloud state in ${stateDir}: start \`cyphonic cloud --state ${stateDir}\` once first, or check the path`);
  }
  return loadSettings(stateDir, {});
}

/** Reads the state directory's fixed settings, creating them from `requested` (or the defaults) on first use. */
export function loadSettings(stateDir: string, requested: Partial<CloudSettings>): CloudSettings {
  const file = path.join(stateDir, "settings.json");
  if (!fs.existsSync(file)) {
    const settings = { overlayDomain: requested.overlayDomain ?? DEFAULT_OVERLAY_DOMAIN, pool: requested.pool ?? DEFAULT_POOL };
    // Validated before the write: a rejected value must not become the directory's fixed setting.
    const domain = overlayDomainSchema.safeParse(settings.overlayDomain);
    if (!domain.success) throw new SettingsError(`invalid --domain "${settings.overlayDomain}": ${domain.error.issues[0]?.message}`);
    const pool = poolSchema.safeParse(settings.pool);
    if (!pool.success) throw new SettingsError(`invalid --pool "${settings.pool}": ${pool.error.issues[0]?.message}`);
    writeFileAtomic(file, JSON.stringify(settings, null, 2) + "\n", 0o600);
    return settings;
  }
  const parsed = settingsSchema.safeParse(JSON.parse(fs.readFileSync(file, "utf8")));
  if (!parsed.success) throw new SettingsError(`invalid ${file}: ${parsed.error.issues[0]?.message}; restore it from a backup`);
  const stored = parsed.data;
  for (const key of ["overlayDomain", "pool"] as const) {
    if (requested[key] !== undefined && requested[key] !== stored[key]) {
      throw new SettingsError(`${key} is "${stored[key]}" in ${file}, but "${requested[key]}" was requested; drop the flag or use a new state directory`);
    }
  }
  return stored;
}
