// The record of the last token copied from the boot partition, in the state
// directory. It is written before the copy, and it keeps no secret: the
// SHA-256 of a random token of 96 bits or more cannot be reversed. A later
// run compares it with a boot file that it finds again, to tell this
// adapter's own token (already redeemed, safe to retire) from a new one.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../../util/files.js";
import { Logger } from "../../util/log.js";

export const TOKEN_RECORD_FILE_NAME = "appliance-provision.json";

export interface TokenRecord {
  /** Hex SHA-256 of the token secret. */
  tokenSha256: string;
  /** Size of the boot file in bytes, which the wipe keeps. */
  bootFileBytes: number;
}

const recordSchema = z.object({
  version: z.literal(1),
  tokenSha256: z.string().regex(/^[0-9a-f]{64}$/),
  bootFileBytes: z.number().int().nonnegative(),
});

export function tokenRecordPath(stateDir: string): string {
  return path.join(stateDir, TOKEN_RECORD_FILE_NAME);
}

/**
 * Returns the record, or null when there is none. An unreadable record is
 * logged and treated as missing, because it only helps to recognise an old
 * boot file, and the run that follows writes a new one.
 */
export function readTokenRecord(stateDir: string, log: Logger): TokenRecord | null {
  const file = tokenRecordPath(stateDir);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  try {
    const { tokenSha256, bootFileBytes } = recordSchema.parse(JSON.parse(text));
    return { tokenSha256, bootFileBytes };
  } catch (err) {
    log.warn({ err, file }, "ignoring an invalid provisioning record");
    return null;
  }
}

export function writeTokenRecord(stateDir: string, record: TokenRecord): void {
  writeFileAtomic(tokenRecordPath(stateDir), JSON.stringify({ version: 1, ...record }, null, 2) + "\n", 0o600);
}
