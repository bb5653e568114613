// Summary statistics of benchmark samples.

export interface Summary {
  /** Number of samples. */
  n: number;
  min: number;
  median: number;
  max: number;
}

/** Returns min, median and max of the finite samples, or null when there are none. */
export function summarize(samples: readonly number[]): Summary | null {
  const sorted = samples.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  return { n: sorted.length, min: sorted[0]!, median: percentile(sorted, 50), max: sorted[sorted.length - 1]! };
}

/**
 * Returns the p-th percentile (0-100) of sorted samples by linear
 * interpolation between closest ranks (the "R-7" method of Hyndman and Fan,
 * which numpy and spreadsheets use by default).
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (rank - low);
}

/** Returns the quotient, or null when either value is missing or the divisor is zero. */
export function ratio(value: number | null | undefined, reference: number | null | undefined): number | null {
  if (value == null || reference == null || reference === 0) return null;
  return value / reference;
}
