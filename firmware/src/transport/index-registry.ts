// Session indexes shared by every SecureEndpoint on one UDP socket. An index
// names one session (or pending handshake) across all local identities, so
// the socket's receive path finds the owning endpoint in one lookup.
import { randomBytes } from "../protocol/crypto.js";

export class IndexRegistry<Owner> {
  private readonly owners = new Map<number, Owner>();

  /** A random nonzero index not in use; random so an off-path sender cannot guess live ones. */
  allocate(owner: Owner): number {
    for (;;) {
      const index = randomBytes(4).readUInt32BE(0);
      if (index !== 0 && !this.owners.has(index)) {
        this.owners.set(index, owner);
        return index;
      }
    }
  }

  release(index: number): void {
    this.owners.delete(index);
  }

  owner(index: number): Owner | undefined {
    return this.owners.get(index);
  }

  get size(): number {
    return this.owners.size;
  }
}
