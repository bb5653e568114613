// Tears down labs that a test left up when the test process exits or is
// interrupted. SIGKILL cannot be handled, so scripts/run-tests.sh also runs
// `lab.sh reap` before each run.

export interface SyncTeardown {
  downSync(): void;
}

const liveLabs = new Set<SyncTeardown>();
let installed = false;

export function registerLab(lab: SyncTeardown): void {
  liveLabs.add(lab);
}

export function unregisterLab(lab: SyncTeardown): void {
  liveLabs.delete(lab);
}

/** Adds the process 'exit', SIGINT and SIGTERM handlers once per process. */
export function installTeardownHandlers(): void {
  if (installed) {
    return;
  }
  installed = true;
  process.on("exit", teardownAll);
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    // A listener replaces Node's default exit on the signal, so this one exits
    // with the shell's 128 + signal number code after the teardown.
    process.once(signal, () => {
      teardownAll();
      process.exit(code);
    });
  }
}

function teardownAll(): void {
  for (const lab of [...liveLabs]) {
    try {
      lab.downSync();
    } catch (error) {
      // A failure here must not stop the teardown of the other labs.
      console.error(`lab teardown failed: ${String(error)}`);
    }
  }
}
