// Operations on the adapter's nftables table through `nft`.
import { NftCommandError, runNft } from "./nft.js";
import { leaseElementArgs, NFT_TABLE_FAMILY, NFT_TABLE_NAME, savedSysctlsFromListing } from "./ruleset.js";

/** Packet and byte totals of a named nftables counter. */
export interface CounterValue {
  packets: number;
  bytes: number;
}

// nft reports a missing table, set element or counter with the kernel's
// ENOENT, which it prints as strerror(ENOENT).
function isNotFound(err: unknown): boolean {
  return err instanceof NftCommandError && err.exitCode === 1 && err.stderr.includes("No such file or directory");
}

/** Replaces the table with `ruleset` in one nft transaction. */
export async function applyRuleset(ruleset: string): Promise<void> {
  await runNft(["-f", "-"], { input: ruleset });
}

/** Deletes the table with its set, counters and chains. Does nothing when the table does not exist. */
export async function deleteTable(): Promise<void> {
  try {
    await runNft(["delete", "table", NFT_TABLE_FAMILY, NFT_TABLE_NAME]);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/**
 * Returns the saved sysctl values from the comment of an existing table, in
 * the form formatSavedSysctls returns, or "" when there is no table.
 */
export async function readSavedSysctlsText(): Promise<string> {
  let listing: string;
  try {
    // -t leaves out set elements, which can be many.
    listing = await runNft(["-t", "list", "table", NFT_TABLE_FAMILY, NFT_TABLE_NAME]);
  } catch (err) {
    if (isNotFound(err)) return "";
    throw err;
  }
  return savedSysctlsFromListing(listing);
}

/** Adds the pair to the lease set. Adding a pair that is in the set succeeds. */
export async function addLeaseElement(mac: string, virtualIP: string): Promise<void> {
  await runNft(leaseElementArgs("add", mac, virtualIP));
}

/** Deletes the pair from the lease set. Returns false when the pair was not in the set. */
export async function deleteLeaseElement(mac: string, virtualIP: string): Promise<boolean> {
  try {
    await runNft(leaseElementArgs("delete", mac, virtualIP));
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** Reads a named counter of the table. */
export async function readCounter(name: string): Promise<CounterValue> {
  const command = `nft -j list counter ${NFT_TABLE_FAMILY} ${NFT_TABLE_NAME} ${name}`;
  const output = await runNft(["-j", "list", "counter", NFT_TABLE_FAMILY, NFT_TABLE_NAME, name]);
  // The JSON schema is documented in libnftables-json(5).
  const parsed = JSON.parse(output) as { nftables?: { counter?: { name?: unknown; packets?: unknown; bytes?: unknown } }[] };
  const counter = parsed.nftables?.find((entry) => entry.counter?.name === name)?.counter;
  if (typeof counter?.packets !== "number" || typeof counter.bytes !== "number") {
    throw new Error(`${command} printed no counter ${name} with numeric packets and bytes: ${output.slice(0, 300)}`);
  }
  return { packets: counter.packets, bytes: counter.bytes };
}
