// Sorts an error that ended the adapter's start into one that a restart can
// fix and one that only a person can fix. The second kind must not be
// retried, because each retry would redeem a rejected token at the AS again.
import { ProvisioningError } from "../../node/provision.js";
import { TokenFileError } from "../../node/token-file.js";

/** The adapter has no identity and was given no token file to redeem. */
export class NotProvisionedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotProvisionedError";
  }
}

export interface StartFailure {
  /** True when restarting the adapter cannot help: the token, the token file or the identity needs a person. */
  permanent: boolean;
  /** Stable code for logs: the AS's rejection code (token_invalid, token_expired, token_reused, ...) or one of ours. */
  code: string;
  message: string;
}

export function classifyStartFailure(err: unknown): StartFailure {
  const message = err instanceof Error ? err.message : String(err);
  // provision.ts retries timeouts and transient AS errors itself, so every
  // ProvisioningError that reaches here is a rejection or a protocol mismatch.
  if (err instanceof ProvisioningError) return { permanent: true, code: err.code, message };
  if (err instanceof TokenFileError) return { permanent: true, code: "token_file_invalid", message };
  if (err instanceof NotProvisionedError) return { permanent: true, code: "not_provisioned", message };
  return { permanent: false, code: "start_failed", message };
}
