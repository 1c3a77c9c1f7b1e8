/**
 * Order statistics for latency samples. Percentiles use linear interpolation between closest ranks (numpy's default,
 * `method="linear"`), so p50 of an even-sized sample is the mean of the two middle values and results match what a
 * reader would compute by hand or with numpy.
 */

/** The q-th percentile (0 ≤ q ≤ 100) of `samples`; NaN for an empty sample. */
export function percentile(samples: readonly number[], q: number): number {
  if (!(q >= 0 && q <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${q}`);
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (q / 100) * (sorted.length - 1);
  const lower = Math.floor(rank);
  const upper = Math.ceil(rank);
  const weight = rank - lower;
  return sorted[lower] + (sorted[upper] - sorted[lower]) * weight;
}

export function mean(samples: readonly number[]): number {
  if (samples.length === 0) return NaN;
  let sum = 0;
  for (const x of samples) sum += x;
  return sum / samples.length;
}

export interface SampleSummary {
  count: number;
  mean: number;
  min: number;
  p50: number;
  p95: number;
}

export function summarize(samples: readonly number[]): SampleSummary {
  return {
    count: samples.length,
    mean: mean(samples),
    min: samples.length ? Math.min(...samples) : NaN,
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
  };
}
