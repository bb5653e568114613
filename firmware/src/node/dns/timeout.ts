export type TimedResult<T> = { timedOut: false; value: T } | { timedOut: true };

/** Settles with the promise's value, or with `timedOut` after `timeoutMs`. A rejection passes through. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<TimedResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<TimedResult<T>>((resolve) => {
    timer = setTimeout(() => resolve({ timedOut: true }), timeoutMs);
  });
  try {
    return await Promise.race([promise.then((value): TimedResult<T> => ({ timedOut: false, value })), expiry]);
  } finally {
    clearTimeout(timer);
  }
}
