import { seedToUint64, uniform, uniformBits } from '../../src/sampling';
import { UNIFORM_VECTORS } from '../helpers/sampler_vectors';

describe('uniform(seed, counter)', () => {
  test('equals the values computed with Python integers (64-bit wrap-around, negative seeds, 2^53 − 1)', () => {
    for (const v of UNIFORM_VECTORS) {
      expect(uniformBits(v.seed, v.counter)).toBe(v.bits);
      expect(uniform(v.seed, v.counter)).toBe(v.bits / 2 ** 24);
    }
  });

  test('seeds map to uint64 by two’s complement', () => {
    expect(seedToUint64(0)).toBe(0n);
    expect(seedToUint64(-1)).toBe(2n ** 64n - 1n);
    expect(seedToUint64(-(2 ** 53 - 1))).toBe(2n ** 64n - (2n ** 53n - 1n));
    expect(seedToUint64(2 ** 32 + 5)).toBe(2n ** 32n + 5n);
  });

  test('is uniform on [0, 1) in 24-bit steps, and nearby seeds and counters differ', () => {
    const xs = Array.from({ length: 20000 }, (_, c) => uniform(-3, c));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    for (const x of xs.slice(0, 100)) expect(Number.isInteger(x * 2 ** 24)).toBe(true);
    const mean = xs.reduce((a, b) => a + b) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(4 * Math.sqrt(1 / 12 / xs.length));
    expect(uniform(1, 0)).not.toBe(uniform(1 + 2 ** 32, 0));
    expect(uniform(1, 0)).not.toBe(uniform(2, 0));
    expect(uniform(1, 0)).not.toBe(uniform(1, 1));
  });

  test('rejects seeds that are not safe integers and negative or fractional counters', () => {
    for (const seed of [0.5, NaN, Infinity, 2 ** 53, -(2 ** 53)]) expect(() => uniform(seed, 0)).toThrow(/seed must be an integer/);
    for (const counter of [-1, 0.5, NaN, 2 ** 53]) expect(() => uniform(0, counter)).toThrow(/counter must be a non-negative integer/);
  });
});
