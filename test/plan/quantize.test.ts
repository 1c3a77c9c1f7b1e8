/**
 * The plan's quantizer (src/plan/quantize.ts) against the runtime's `quantize_row` (native/src/common/dtype.h):
 * the same bytes for the same float32 rows, the same dequantized weights as the kernels load, and the error bound
 * of dequantize(quantize(x)). Needs the addon (npm run build:native).
 */
import { dequantize, quantize, quantizedByteLength, type QuantType } from '../../src/plan/quantize';
import { loadNative } from '../../src/runtime/native';

const addon = loadNative();

/** A seeded stream in [0, 1). */
function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/**
 * Rows that exercise the rounding: Gaussian-ish values at several scales, exact half steps of the block's scale
 * (ties), a row of zeros, a constant row, tiny values whose f16 scale is subnormal, and single spikes.
 */
function rows(K: number, count: number, seed: number): Float32Array {
  const u = uniform(seed);
  const out = new Float32Array(K * count);
  for (let r = 0; r < count; r++) {
    const row = out.subarray(r * K, (r + 1) * K);
    const kind = r % 6;
    const scale = [0.02, 1, 300, 1e-6, 5, 0.5][kind];
    for (let j = 0; j < K; j++) {
      const gauss = (u() + u() + u() + u() - 2) * scale;
      if (kind === 1 && j % 32 === 0) row[j] = 127; // d = 1: the row's other values at half steps are ties
      else if (kind === 1) row[j] = Math.round((u() - 0.5) * 200) / 2;
      else if (kind === 2 && r % 12 === 2) row[j] = 0;
      else if (kind === 5) row[j] = j % 32 === 7 ? -40 : 0.25; // one spike per block, the rest constant
      else row[j] = gauss;
    }
  }
  return out;
}

describe.each<[QuantType, 'q8_0' | 'q4_0']>([
  ['Q8_0', 'q8_0'],
  ['Q4_0', 'q4_0'],
])('%s', (type, kernel) => {
  test.each([32, 96, 256, 608])('TypeScript and the runtime write the same bytes (rows of %i weights)', (K) => {
    const x = rows(K, 36, K);
    const ts = quantize(x, type);
    const native = Buffer.from(addon.kernels.quantize(x, K, kernel));
    expect(ts.length).toBe(quantizedByteLength(type, x.length));
    expect(native.length).toBe(ts.length);
    const firstDiff = ts.findIndex((b, i) => b !== native[i]);
    expect(firstDiff).toBe(-1);
  });

  test('dequantize equals the weights the kernels load (W · one-hot columns, exact)', () => {
    const K = 64;
    const N = 12;
    const x = rows(K, N, 5);
    const bytes = quantize(x, type);
    const identity = new Float32Array(K * K);
    for (let k = 0; k < K; k++) identity[k * K + k] = 1;
    // Y[m, n] = Σ_k I[m, k] · W[n, k] = W[n, m]: one non-zero product per output, so no rounding
    const y = addon.kernels.linear(identity, K, K, new Uint8Array(bytes), kernel, N, { impl: 'ref' });
    const w = dequantize(bytes, type, x.length);
    for (let n = 0; n < N; n++) for (let m = 0; m < K; m++) expect(y[m * N + n] + 0).toBe(w[n * K + m] + 0); // + 0: −0 and 0 alike
  });

  test('dequantize(quantize(x)) is within the block bound of x', () => {
    // Q8_0: |x − x̂| ≤ d/2 with d = amax/127, plus the f16 scale's rounding (relative 2⁻¹¹ of |x̂| ≤ amax, or
    //       absolute 2⁻²⁵ per unit of |q| ≤ 127 where the scale is an f16 subnormal: the 1e-6 rows).
    // Q4_0: levels (q − 8)·d with d = (signed max)/−8 and q ≤ 15, so the extreme opposite the max is clamped to
    //       7·|d| = amax − |d|: |x − x̂| ≤ |d| = amax/8, plus the same scale rounding (|q − 8| ≤ 8).
    const K = 256;
    const x = rows(K, 30, 17);
    const back = dequantize(quantize(x, type), type, x.length);
    let worst = 0;
    for (let b = 0; b < x.length / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
      const bound = (type === 'Q8_0' ? amax / 127 / 2 : amax / 8) + amax * 2 ** -10 + (type === 'Q8_0' ? 127 : 8) * 2 ** -25;
      for (let j = 0; j < 32; j++) worst = Math.max(worst, Math.abs(x[b * 32 + j] - back[b * 32 + j]) / bound);
    }
    expect(worst).toBeLessThanOrEqual(1);
    expect(worst).toBeGreaterThan(0.3); // the bound is not vacuous
  });
});

test('quantizing values that do not fill blocks of 32 is refused', () => {
  expect(() => quantize(new Float32Array(40), 'Q8_0')).toThrow('40 values do not fill blocks of 32');
  expect(() => addon.kernels.quantize(new Float32Array(40), 40, 'q4_0')).toThrow('blocks of 32');
});
