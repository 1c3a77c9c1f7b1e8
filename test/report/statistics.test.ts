import { mean, percentile, summarize } from '../../src/report/statistics';
import { speedupAt, ThroughputRow } from '../../src/report/throughput';
import { formatBytes, formatCount, percent } from '../../src/report/format';

describe('latency statistics', () => {
  test('p50 and p95 match hand-computed linear interpolation', () => {
    // sorted: 1 2 3 4 10; p50 = rank 2 → 3; p95 = rank 3.8 → 4 + 0.8·(10 − 4) = 8.8
    const samples = [10, 3, 1, 4, 2];
    expect(percentile(samples, 50)).toBe(3);
    expect(percentile(samples, 95)).toBeCloseTo(8.8, 12);
    // even count: p50 is the mean of the middle two; p95 of 1..4 = rank 2.85 → 3.85
    expect(percentile([4, 1, 3, 2], 50)).toBe(2.5);
    expect(percentile([4, 1, 3, 2], 95)).toBeCloseTo(3.85, 12);
    expect(percentile([7], 95)).toBe(7);
    expect(percentile([5, 1], 0)).toBe(1);
    expect(percentile([5, 1], 100)).toBe(5);
  });

  test('summary of a sample', () => {
    const s = summarize([2, 4, 4, 4, 5, 5, 7, 9]);
    expect(s.count).toBe(8);
    expect(s.mean).toBe(5);
    expect(s.min).toBe(2);
    expect(s.p50).toBe(4.5);
    expect(s.p95).toBeCloseTo(7 + 0.65 * 2, 12); // rank 6.65 between 7 and 9
    expect(Number.isNaN(mean([]))).toBe(true);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });

  test('speedup is the median of paired repeats, so one slow repeat does not move it', () => {
    const row = (mode: 'dense' | 'sparse', repeat: number[]): ThroughputRow => ({
      mode, phase: 'decode', batch: 1, tokens_per_s: 1000 / mean(repeat), p50_ms: 0, p95_ms: 0, mean_ms: mean(repeat), samples: repeat.length, repeat_mean_ms: repeat,
    });
    // pairs: 10/5 = 2, 10/5 = 2, 40/5 = 8 (the machine stalled during one dense run) → median 2
    const rows = [row('dense', [10, 10, 40]), row('sparse', [5, 5, 5])];
    expect(speedupAt(rows, 'decode', 1)).toBe(2);
    expect(rows[1].tokens_per_s / rows[0].tokens_per_s).toBe(4); // the naive ratio of means is skewed
    expect(Number.isNaN(speedupAt(rows, 'prefill', 1))).toBe(true);
  });
});

describe('report number formatting', () => {
  test('no exponent notation, about three significant digits', () => {
    expect(formatBytes(1010 * 1024)).toBe('1010 KiB');
    expect(formatBytes(3.13 * 2 ** 30)).toBe('3.13 GiB');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatCount(527_616)).toBe('528k');
    expect(formatCount(1_680_000_000)).toBe('1.68B');
    expect(formatCount(12_345_678)).toBe('12.3M');
    expect(percent(0.4876)).toBe('48.8%');
  });
});
