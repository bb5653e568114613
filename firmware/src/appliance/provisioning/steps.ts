// The steps of `cyphonic appliance-provision`, in the order they run. Each
// step is idempotent, and each step that writes fsyncs its result before the
// next step starts. So a run that is cut off after any step is finished by
// the next run, which starts again at the first step.
export const PROVISION_STEPS = [
  // Deletes temporary files that a power cut during an atomic write left
  // behind. The one next to token.txt contains the secret.
  "remove-stale-temp-files",
  // Finds and validates the boot file and decides which steps below run. Writes nothing.
  "read-boot-file",
  "write-wan-profile",
  "write-lan-profile",
  "write-firewall",
  "write-adapter-config",
  // Records the SHA-256 of the token and the boot file's size in the state
  // directory, before the token is copied. A later run uses the record to
  // recognise this boot file after the adapter has redeemed the token, or
  // after a cut during the wipe has left it unreadable.
  "record-token-hash",
  "write-state-token",
  // Only after the state copy is durable: overwrite the secret in place, then delete the file.
  "wipe-boot-file",
  "delete-boot-file",
] as const;

export type ProvisionStep = (typeof PROVISION_STEPS)[number];

export function isProvisionStep(name: string): name is ProvisionStep {
  return (PROVISION_STEPS as readonly string[]).includes(name);
}
