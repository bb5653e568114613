// The token file that a user puts on the boot partition: the three lines of
// the operator's token file (as_endpoint, as_key, token), which
// parseTokenFile validates, and the optional network settings. Its format is
// documented in overlay/boot/firmware/cyphonic-token.txt.example.
import { createHash } from "node:crypto";
import { TokenFile, TokenFileError, parseTokenFile } from "../../node/token-file.js";
import { BootTokenFileError } from "./errors.js";
import { FieldValue, NETWORK_FIELDS, NetworkChanges, parseNetworkChanges } from "./network-settings.js";

const TOKEN_FIELDS = ["as_endpoint", "as_key", "token"] as const;
const KNOWN_FIELDS: readonly string[] = [...TOKEN_FIELDS, ...NETWORK_FIELDS];

export interface BootTokenFile {
  token: TokenFile;
  /** Hex SHA-256 of the token secret: identifies the token in the state directory without storing it twice. */
  tokenSha256: string;
  network: NetworkChanges;
  /** Line of each network field that the file sets, for errors found later against the current configuration. */
  networkLines: ReadonlyMap<string, number>;
}

/**
 * Parses and validates the boot token file. Throws BootTokenFileError with
 * the line, the field and the fix. Messages never contain the token secret.
 */
export function parseBootTokenFile(data: Buffer): BootTokenFile {
  // Windows Notepad can save as "Unicode" (UTF-16), which no line of the file would survive.
  if (data.length >= 2 && ((data[0] === 0xff && data[1] === 0xfe) || (data[0] === 0xfe && data[1] === 0xff))) {
    throw new BootTokenFileError(null, null, "the file is saved as UTF-16; save it again as UTF-8 or plain text");
  }
  const fields = readFields(data.toString("utf8").replace(/^\uFEFF/, ""));

  const token = parseTokenFields(fields);
  const networkFields = new Map([...fields].filter(([key]) => (NETWORK_FIELDS as readonly string[]).includes(key)));
  return {
    token,
    tokenSha256: sha256Hex(token.token),
    network: parseNetworkChanges(networkFields),
    networkLines: new Map([...networkFields].map(([key, field]) => [key, field.line])),
  };
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Splits the text into KEY=VALUE fields, with the same rules as parseTokenFile plus a check for repeated keys. */
function readFields(text: string): Map<string, FieldValue> {
  const fields = new Map<string, FieldValue>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (!trimmed || trimmed.startsWith("#")) return;
    const eq = trimmed.indexOf("=");
    // The line itself is not quoted, because it may contain the token.
    if (eq < 1) throw new BootTokenFileError(line, null, "the line is not KEY=VALUE; write each setting as KEY=VALUE or start a comment with #");
    const key = trimmed.slice(0, eq).trim().toLowerCase();
    if (!KNOWN_FIELDS.includes(key)) {
      throw new BootTokenFileError(line, key, `unknown field "${key}"; the fields are ${KNOWN_FIELDS.join(", ")}`);
    }
    const previous = fields.get(key);
    if (previous) throw new BootTokenFileError(line, key, `${key} is set again (first on line ${previous.line}); keep one of the two lines`);
    fields.set(key, { value: trimmed.slice(eq + 1).trim(), line });
  });
  return fields;
}

/** Validates the token fields with parseTokenFile, so the state copy is accepted by the adapter that reads it. */
function parseTokenFields(fields: ReadonlyMap<string, FieldValue>): TokenFile {
  for (const key of TOKEN_FIELDS) {
    const field = fields.get(key);
    if (!field) throw new BootTokenFileError(null, key, `missing field "${key}"; add the line ${key}=... with the value from the operator`);
    if (!field.value) throw new BootTokenFileError(field.line, key, `${key} is empty; fill in the value from the operator`);
  }
  const text = TOKEN_FIELDS.map((key) => `${key}=${fields.get(key)!.value}`).join("\n");
  try {
    return parseTokenFile(text, "");
  } catch (err) {
    if (!(err instanceof TokenFileError) || err.field === null) throw err;
    // parseTokenFile prefixes the file name given to it, here "", and ": ".
    const message = err.message.replace(/^: /, "");
    const fix = message.includes("copy it again") ? "" : "; copy the value again from the operator's token file";
    throw new BootTokenFileError(fields.get(err.field)?.line ?? null, err.field, message + fix);
  }
}
