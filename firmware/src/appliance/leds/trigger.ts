// Parses the `trigger` attribute of an LED class device. Reading it lists every
// trigger the kernel offers, with the active one in brackets:
// "none rc-feedback [mmc0] timer oneshot heartbeat default-on".

export interface TriggerList {
  /** Active trigger, or "none" when no entry is bracketed. */
  active: string;
  available: string[];
}

export function parseTriggerList(content: string): TriggerList {
  let active = "none";
  const available: string[] = [];
  for (const word of content.trim().split(/\s+/)) {
    if (word === "") continue;
    const bracketed = /^\[(.+)\]$/.exec(word);
    const name = bracketed?.[1] ?? word;
    if (bracketed) active = name;
    available.push(name);
  }
  return { active, available };
}
