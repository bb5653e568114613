// Temporary files that writeFileAtomic leaves when power is cut between
// writing and renaming: ".<name>.<pid>.tmp" next to the target. The one next
// to token.txt contains the token, so each run deletes them first.
import fs from "node:fs";
import path from "node:path";

/** Deletes the temporary files of the given targets and returns their paths. */
export function removeStaleTempFiles(targets: readonly string[]): string[] {
  const removed: string[] = [];
  const byDir = new Map<string, Set<string>>();
  for (const target of targets) {
    const dir = path.dirname(target);
    byDir.set(dir, (byDir.get(dir) ?? new Set()).add(path.basename(target)));
  }
  for (const [dir, names] of byDir) {
    let entries: string[];
    try {
      entries = fs.readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw err;
    }
    for (const entry of entries) {
      const match = /^\.(.+)\.\d+\.tmp$/.exec(entry);
      if (!match || !names.has(match[1]!)) continue;
      const file = path.join(dir, entry);
      fs.rmSync(file, { force: true });
      removed.push(file);
    }
  }
  return removed;
}
