// Makes commits durable without blocking the event loop. A transaction run
// with synchronous = NORMAL writes its frames to the write-ahead log (WAL) but
// does not fsync it, so it is visible to every connection at once and
// survives a crash of this process, but not a power loss. WalSync then calls
// fdatasync(2) on the WAL file in libuv's thread pool, which also writes the
// file size that appended frames need. Once it returns, the commit is as
// durable as one made with synchronous = FULL. Commits that arrive while a
// sync runs share the next one (group commit).
//
// This relies on SQLite's WAL being append-only between checkpoints, so one
// sync of the file covers every commit written before it. A checkpoint
// syncs the WAL itself before it copies frames into the database, and the
// WAL file is not deleted while this process keeps its connection open, so
// the descriptor opened here keeps naming the live WAL file.
import fs from "node:fs";

type Fsync = (fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => void;

interface Waiter {
  commit: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class WalSync {
  /** Commits noted so far, and how many of them an fsync has covered. */
  private committed = 0;
  private synced = 0;
  private running = false;
  private closed = false;
  private readonly waiters: Waiter[] = [];
  private fd: number | null;

  /**
   * Opens the WAL file at `walPath`, which SQLite creates when it opens the
   * database in WAL mode. With `walPath` null (an in-memory database) every
   * commit counts as durable at once.
   */
  constructor(
    walPath: string | null,
    private readonly fsync: Fsync = fs.fdatasync,
  ) {
    this.fd = walPath === null ? null : fs.openSync(walPath, "r");
  }

  /** Records a commit made without a sync. A later durable() waits for an fsync that starts after this call. */
  noteCommit(): void {
    this.committed++;
  }

  /** Resolves once every commit noted so far is on disk. Rejects when the fsync fails. */
  durable(): Promise<void> {
    if (this.synced >= this.committed) return Promise.resolve();
    if (this.closed) return Promise.reject(closedError());
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ commit: this.committed, resolve, reject });
      this.start();
    });
  }

  /**
   * Stops syncing. Waiters of an fsync in flight get its outcome. The
   * descriptor is closed after that fsync returns, so the thread pool never
   * syncs a closed or reused descriptor.
   */
  close(): void {
    this.closed = true;
    if (this.running) return;
    this.closeDescriptor();
    this.rejectRemaining();
  }

  private start(): void {
    if (this.running) return;
    if (this.fd === null) {
      // An in-memory database has nothing to sync.
      this.synced = this.committed;
      this.settle(this.synced, null);
      return;
    }
    this.running = true;
    const target = this.committed;
    this.fsync(this.fd, (err) => {
      this.running = false;
      if (err) {
        // The kernel may drop dirty pages after a failed fsync, so a later
        // success would not prove these commits durable. Their waiters fail.
        this.settle(target, err);
      } else {
        this.synced = Math.max(this.synced, target);
        this.settle(this.synced, null);
      }
      if (this.closed) {
        this.closeDescriptor();
        this.rejectRemaining();
      } else if (this.waiters.length > 0) {
        this.start();
      }
    });
  }

  /** Settles the waiters whose commit is at most `upTo`, in the order they came. */
  private settle(upTo: number, err: Error | null): void {
    while (this.waiters.length > 0 && this.waiters[0]!.commit <= upTo) {
      const waiter = this.waiters.shift()!;
      if (err) waiter.reject(err);
      else waiter.resolve();
    }
  }

  private rejectRemaining(): void {
    const err = closedError();
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
  }

  private closeDescriptor(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
  }
}

function closedError(): Error {
  return new Error("the store was closed before its last commits were synced");
}
