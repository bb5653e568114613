// The overlay zone: which names it contains and its synthesized SOA record.
import type { SoaAnswer } from "dns-packet";
import { hostLabelText } from "./question.js";

/**
 * Negative-caching TTL (RFC 2308 section 5) in seconds. It is short so a
 * member that joins right after a miss becomes resolvable within seconds.
 */
export const NEGATIVE_TTL_SECONDS = 5;

export type NameRelation =
  | { kind: "outside" }
  | { kind: "apex" }
  /** Below the apex with host name labels only. `fqdn` is lower-cased without a trailing dot. */
  | { kind: "member"; fqdn: string }
  /** Below the apex, but a label has a byte that no member name can contain. */
  | { kind: "invalid_member" };

export class OverlayZone {
  /** Apex, lower-cased, without a trailing dot. */
  readonly domain: string;
  private readonly labels: string[];

  constructor(domain: string) {
    const trimmed = domain.endsWith(".") ? domain.slice(0, -1) : domain;
    const labels = trimmed.split(".").map((label) => hostLabelText(Buffer.from(label, "utf8")));
    const wireBytes = trimmed.length + 2;
    if (trimmed === "" || labels.some((label) => label === null || label.length > 63) || wireBytes > 255) {
      throw new Error(
        `invalid overlay domain "${domain}": expected labels of 1 to 63 letters, digits, '-' or '_', ` +
          `such as "cyphonic.internal"`,
      );
    }
    this.labels = labels as string[];
    this.domain = this.labels.join(".");
  }

  /** Classifies a question name by whole labels, ignoring ASCII case. */
  classify(nameLabels: Buffer[]): NameRelation {
    const memberLabelCount = nameLabels.length - this.labels.length;
    if (memberLabelCount < 0) return { kind: "outside" };

    for (let i = 0; i < this.labels.length; i++) {
      const label = nameLabels[memberLabelCount + i];
      if (label === undefined || hostLabelText(label) !== this.labels[i]) return { kind: "outside" };
    }
    if (memberLabelCount === 0) return { kind: "apex" };

    const memberLabels: string[] = [];
    for (const label of nameLabels.slice(0, memberLabelCount)) {
      const text = hostLabelText(label);
      if (text === null) return { kind: "invalid_member" };
      memberLabels.push(text);
    }
    return { kind: "member", fqdn: [...memberLabels, ...this.labels].join(".") };
  }

  /** Returns the SOA record for the authority section of NXDOMAIN and NODATA responses (RFC 2308 section 3). */
  soaRecord(): SoaAnswer {
    return {
      type: "SOA",
      name: this.domain,
      ttl: NEGATIVE_TTL_SECONDS,
      class: "IN",
      data: {
        mname: this.domain,
        rname: `hostmaster.${this.domain}`,
        serial: 1,
        refresh: 3600,
        retry: 600,
        expire: 86_400,
        minimum: NEGATIVE_TTL_SECONDS,
      },
    };
  }
}
