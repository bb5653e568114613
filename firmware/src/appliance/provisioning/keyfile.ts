// Line-based editing of the INI files that NetworkManager reads
// (.nmconnection keyfiles). Comments, blank lines and other keys stay as they
// are, so the files keep the explanations the overlay ships with.

/** Matches "key=value" with the key in group 1. Comments and section headers do not match. */
const KEY_LINE = /^\s*([^#;[=\s][^=]*?)\s*=/;
const SECTION_LINE = /^\s*\[([^\]]+)\]\s*$/;

/** Lines [start, end) of a section's body: after its header, up to the next header. */
function sectionBody(lines: readonly string[], section: string): { start: number; end: number } | null {
  const header = lines.findIndex((line) => SECTION_LINE.exec(line)?.[1] === section);
  if (header < 0) return null;
  let end = header + 1;
  while (end < lines.length && !SECTION_LINE.test(lines[end]!)) end++;
  return { start: header + 1, end };
}

/** Returns the value of `key` in `section`, or null. */
export function getKeyfileValue(text: string, section: string, key: string): string | null {
  const lines = text.split("\n");
  const body = sectionBody(lines, section);
  if (!body) return null;
  for (let i = body.start; i < body.end; i++) {
    const line = lines[i]!;
    if (KEY_LINE.exec(line)?.[1] === key) return line.slice(line.indexOf("=") + 1).trim();
  }
  return null;
}

/**
 * Sets keys in one section: a string replaces the value in place (or adds the
 * key after the section's last key), null deletes the key. Applying the same
 * values twice gives the same text. Throws when the section is missing.
 */
export function setKeyfileValues(text: string, section: string, values: Readonly<Record<string, string | null>>, file: string): string {
  const lines = text.split("\n");
  const body = sectionBody(lines, section);
  if (!body) throw new Error(`${file} has no [${section}] section; install the file again from the appliance overlay`);

  const kept: string[] = [];
  const seen = new Set<string>();
  let lastKeyIndex = -1;
  for (let i = body.start; i < body.end; i++) {
    const line = lines[i]!;
    const key = KEY_LINE.exec(line)?.[1];
    if (key === undefined || !(key in values)) {
      kept.push(line);
      if (key !== undefined) lastKeyIndex = kept.length - 1;
      continue;
    }
    const value = values[key];
    // A repeated key leaves the reader to pick one of the values, so only the first line stays.
    if (value === null || value === undefined || seen.has(key)) continue;
    seen.add(key);
    kept.push(`${key}=${value}`);
    lastKeyIndex = kept.length - 1;
  }
  const added = Object.entries(values)
    .filter(([key, value]) => value !== null && !seen.has(key))
    .map(([key, value]) => `${key}=${value}`);
  kept.splice(lastKeyIndex + 1, 0, ...added);
  return [...lines.slice(0, body.start), ...kept, ...lines.slice(body.end)].join("\n");
}
