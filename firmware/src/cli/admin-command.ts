// `cyphonic admin`: operator commands on the cloud's state directory. They
// open the database directly (SQLite WAL allows this while the cloud runs).
import fs from "node:fs";
import { parseArgs } from "node:util";
import { DEFAULT_PORTS, databasePath } from "../cloud/config.js";
import { readServicePublicKey } from "../cloud/service-keys.js";
import { readSettings } from "../cloud/settings.js";
import { CloudStore, NodeKind, NodeRecord } from "../cloud/store/index.js";
import { formatTokenFile } from "../node/token-file.js";
import { writeFileAtomic } from "../util/files.js";
import { UsageError, endpointOption, intOption } from "./common.js";

export const ADMIN_USAGE = `cyphonic admin --state DIR COMMAND
  node add NAME [--kind node|adapter]     create a node; prints its FQDN and virtual IP
  node list                               list nodes
  node delete NAME                        delete a node (an adapter with its general nodes)
  general add NAME --adapter ADAPTER --mac MAC
                                          register a general node (an unmodified device) behind
                                          an adapter; it gets its own FQDN and virtual IP
  token create NAME --as-endpoint ADDRESS:PORT[,[IPv6]:PORT] [--ttl-hours N] [--out FILE]
                                          issue a one-time provisioning token (default 24 h)
                                          and write the token file (stdout without --out)`;

export function runAdmin(argv: string[]): void {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      state: { type: "string" },
      kind: { type: "string" },
      "as-endpoint": { type: "string" },
      "ttl-hours": { type: "string" },
      out: { type: "string" },
      adapter: { type: "string" },
      mac: { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (!values.state) throw new UsageError("--state DIR is required", ADMIN_USAGE);
  const settings = readSettings(values.state);
  const store = new CloudStore(databasePath(values.state), { overlayDomain: settings.overlayDomain, pool: { cidr: settings.pool, reserved: [] } });
  try {
    const [noun, verb, name] = positionals;
    const need = () => {
      if (!name) throw new UsageError(`${noun} ${verb} needs a NAME`, ADMIN_USAGE);
      return name;
    };
    if (noun === "node" && verb === "add") {
      const kind = (values.kind ?? "node") as NodeKind;
      if (kind !== "node" && kind !== "adapter") throw new UsageError(`--kind must be node or adapter, got "${kind}"`, ADMIN_USAGE);
      printNode(store.createNode(need(), kind));
    } else if (noun === "node" && verb === "list") {
      for (const n of store.listNodes()) printNode(n);
    } else if (noun === "node" && verb === "delete") {
      store.deleteNode(findNode(store, need()).id);
    } else if (noun === "general" && verb === "add") {
      if (!values.adapter || !values.mac) throw new UsageError("general add needs --adapter ADAPTER and --mac MAC", ADMIN_USAGE);
      const adapter = findNode(store, values.adapter);
      if (adapter.kind !== "adapter") throw new UsageError(`"${values.adapter}" is a ${adapter.kind}, not an adapter; create it with --kind adapter`, ADMIN_USAGE);
      printNode(store.addGeneralNode(adapter.id, values.mac, need()));
    } else if (noun === "token" && verb === "create") {
      const node = findNode(store, need());
      if (!values["as-endpoint"]) throw new UsageError("token create needs --as-endpoint ADDRESS:PORT (the AS as nodes reach it)", ADMIN_USAGE);
      // Several comma-separated endpoints serve nodes on IPv4 and on IPv6 networks.
      const asEndpoints = values["as-endpoint"].split(",").map((text) => endpointOption(text.trim(), "--as-endpoint", DEFAULT_PORTS.as));
      // A token is a bearer secret: a year is the longest it may stay valid.
      const ttlHours = intOption(values["ttl-hours"], 24, "--ttl-hours", 1, 8_760);
      const issued = store.createToken(node.id, ttlHours * 3_600_000);
      const tokenText = formatTokenFile({ asEndpoints, asKey: readServicePublicKey(values.state, "as"), token: issued.secret });
      if (values.out) {
        writeFileAtomic(values.out, tokenText, 0o600);
        process.stderr.write(`token for ${node.fqdn} written to ${values.out}, valid until ${new Date(issued.expiresAt).toISOString()}\n`);
      } else {
        fs.writeSync(1, tokenText);
      }
    } else {
      throw new UsageError(`unknown admin command "${positionals.join(" ")}"`, ADMIN_USAGE);
    }
  } finally {
    store.close();
  }
}

function findNode(store: CloudStore, name: string): NodeRecord {
  const node = store.getNodeByFqdn(name.includes(".") ? name : `${name}.${store.overlayDomain}`);
  if (!node) throw new UsageError(`no node named "${name}"; see "cyphonic admin node list"`, ADMIN_USAGE);
  return node;
}

function printNode(n: NodeRecord): void {
  const key = n.publicKey ? "provisioned" : "not provisioned";
  const extra = n.kind === "general" ? `\tadapter ${n.adapterId} mac ${n.mac}` : "";
  process.stdout.write(`${n.id}\t${n.fqdn}\t${n.virtualIP}\t${n.kind}\t${key}${extra}\n`);
}
