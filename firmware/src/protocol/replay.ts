// Sliding anti-replay window over 64-bit counters, a bitmap of
// REPLAY_WINDOW_BITS as in RFC 6479: a counter is accepted once, and only if
// it is above the highest seen or inside the window below it. Callers check
// before decrypting (cheap reject) and update only after the AEAD tag verified,
// so a forged packet can never advance the window.
import { REPLAY_WINDOW_BITS } from "./constants.js";

const WORD_BITS = 32;
const WORDS = REPLAY_WINDOW_BITS / WORD_BITS;

/** A copy of a window's state, to move a session between processes. */
export interface ReplayWindowState {
  highest: bigint;
  bitmap: Uint32Array;
}

export class ReplayWindow {
  private readonly bitmap = new Uint32Array(WORDS);
  private highest = -1n;

  /** The highest counter accepted, -1 before the first. */
  get highestAccepted(): bigint {
    return this.highest;
  }

  /** Copies the state; restore() of the copy accepts exactly what this window accepts now. */
  snapshot(): ReplayWindowState {
    return { highest: this.highest, bitmap: this.bitmap.slice() };
  }

  static restore(state: ReplayWindowState): ReplayWindow {
    const window = new ReplayWindow();
    if (state.bitmap.length !== WORDS) throw new RangeError(`replay bitmap has ${state.bitmap.length} words, expected ${WORDS}`);
    window.bitmap.set(state.bitmap);
    window.highest = state.highest;
    return window;
  }

  /** True when counter has not been seen and is not too old. Does not record it. */
  check(counter: bigint): boolean {
    if (counter > this.highest) return true;
    if (this.highest - counter >= BigInt(REPLAY_WINDOW_BITS - WORD_BITS)) return false;
    const bit = Number(counter % BigInt(REPLAY_WINDOW_BITS));
    return (this.bitmap[bit >>> 5]! & (1 << (bit & 31))) === 0;
  }

  /** Records counter; returns false when it was a replay or too old. */
  accept(counter: bigint): boolean {
    if (!this.check(counter)) return false;
    if (counter > this.highest) this.advance(counter);
    const bit = Number(counter % BigInt(REPLAY_WINDOW_BITS));
    this.bitmap[bit >>> 5]! |= 1 << (bit & 31);
    return true;
  }

  /** Clears the words that the move from highest to counter passes over. */
  private advance(counter: bigint): void {
    const oldWord = this.highest < 0n ? -1n : this.highest / BigInt(WORD_BITS);
    const newWord = counter / BigInt(WORD_BITS);
    const steps = newWord - oldWord;
    if (steps >= BigInt(WORDS)) {
      this.bitmap.fill(0);
    } else {
      for (let w = oldWord + 1n; w <= newWord; w++) this.bitmap[Number(w % BigInt(WORDS))] = 0;
    }
    this.highest = counter;
  }
}
