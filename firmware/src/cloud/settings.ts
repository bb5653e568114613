// Settings fixed when a cloud state directory is first used: the overlay
// domain and the virtual IP pool. Node FQDNs and addresses derive from them,
// so a later start (or admin command) with other values is rejected instead
// of silently renaming or renumbering every node.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../util/files.js";
import { DEFAULT_OVERLAY_DOMAIN, DEFAULT_POOL } from "./config.js";

const settingsSchema = z.object({ overlayDomain: z.string(), pool: z.string() });
export type CloudSettings = z.infer<typeof settingsSchema>;

export function loadSettings(stateDir: string, requested: Partial<CloudSettings>): CloudSettings {
  const file = path.join(stateDir, "settings.json");
  if (!fs.existsSync(file)) {
    const settings = { overlayDomain: requested.overlayDomain ?? DEFAULT_OVERLAY_DOMAIN, pool: requested.pool ?? DEFAULT_POOL };
    writeFileAtomic(file, JSON.stringify(settings, null, 2) + "\n", 0o600);
    return settings;
  }
  const parsed = settingsSchema.safeParse(JSON.parse(fs.readFileSync(file, "utf8")));
  if (!parsed.success) throw new Error(`invalid ${file}: ${parsed.error.issues[0]?.message}; restore it from a backup`);
  const stored = parsed.data;
  for (const key of ["overlayDomain", "pool"] as const) {
    if (requested[key] !== undefined && requested[key] !== stored[key]) {
      throw new Error(`${key} is "${stored[key]}" in ${file}, but "${requested[key]}" was requested; drop the flag or use a new state directory`);
    }
  }
  return stored;
}
