/**
 * The plan's quantizer (src/plan/quantize.ts) against the runtime's `quantize_row` (native/src/common/dtype.h):
 * the same bytes for the same float32 rows, the same dequantized weights as the kernels load, and the error bound
 * of dequantize(quantize(x)). Needs the addon (npm run build:native).
 */
import { roundToF16 } from '../../src/checkpoint/safetensors';
import { dequantize, quantize, QUANT_BLOCK, quantizedByteLength, type QuantType } from '../../src/plan/quantize';
import { loadNative, type QuantKernelDtype } from '../../src/runtime/native';

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

describe.each<[QuantType, QuantKernelDtype]>([
  ['Q8_0', 'q8_0'],
  ['Q4_0', 'q4_0'],
  ['Q3_A', 'q3_a'],
  ['Q2_A', 'q2_a'],
])('%s', (type, kernel) => {
  // one block, three, a panel's worth, and past two panels (Q3_A / Q2_A rows are blocks of 64)
  const Ks = QUANT_BLOCK[type].values === 32 ? [32, 96, 256, 608] : [64, 192, 256, 640];
  test.each(Ks)('TypeScript and the runtime write the same bytes (rows of %i weights)', (K) => {
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

  const symmetric = type === 'Q8_0' || type === 'Q4_0';
  if (symmetric) test('dequantize(quantize(x)) is within the block bound of x', () => {
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

/** Normal draws (Box–Muller over the seeded stream), as float32. */
function gaussian(n: number, seed: number): Float32Array {
  const u = uniform(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  return out;
}

function squaredError(a: Float32Array, b: Float32Array, from = 0, to = a.length): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += (a[i] - b[i]) ** 2;
  return sum;
}

describe.each<QuantType>(['Q3_A', 'Q2_A'])('%s, affine: the clipped-range search', (type) => {
  const levels = type === 'Q3_A' ? 7 : 3;
  /** The plain min–max affine code of one block, written independently: offset min, step (max − min)/levels, both as f16. */
  function minMax(x: Float32Array): Float32Array {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of x) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
    const half = Math.fround(Math.fround(hi - lo) * 0.5);
    const mid = Math.fround(lo + half);
    const m = roundToF16(Math.fround(mid - half));
    const d = roundToF16(Math.fround(Math.fround(Math.fround(mid + half) - m) / levels));
    return x.map((v) => Math.fround(d * Math.min(levels, Math.max(0, Math.round((v - m) / d))) + m));
  }

  test('every block is coded at most as badly as min–max would code it, and Gaussian blocks much better on the whole', () => {
    const x = gaussian(64 * 400, 11);
    const back = dequantize(quantize(x, type), type, x.length);
    let searched = 0;
    let plain = 0;
    for (let b = 0; b < x.length / 64; b++) {
      const block = x.subarray(b * 64, b * 64 + 64);
      const e = squaredError(x, back, b * 64, b * 64 + 64);
      const p = squaredError(block, minMax(block));
      expect(e).toBeLessThanOrEqual(p * (1 + 1e-6));
      searched += e;
      plain += p;
    }
    // measured: Q3_A 0.81, Q2_A 0.55 of min–max's squared error
    expect(searched / plain).toBeLessThan(type === 'Q3_A' ? 0.9 : 0.65);
  });

  test('codes the levels of its own grid exactly', () => {
    const x = new Float32Array(128);
    for (let j = 0; j < 128; j++) x[j] = Math.fround(0.125 * ((j * 3) % (levels + 1)) - 0.5 + (j >= 64 ? 2 : 0));
    expect(dequantize(quantize(x, type), type, x.length)).toEqual(x);
  });
});

test('per-weight error (nMSE on Gaussian weights) orders the formats: q2 > q3 > q4 > q8, each within its bound', () => {
  const x = gaussian(64 * 500, 3);
  let energy = 0;
  for (const v of x) energy += v * v;
  const nmse = (type: QuantType) => squaredError(x, dequantize(quantize(x, type), type, x.length)) / energy;
  const got = { Q8_0: nmse('Q8_0'), Q4_0: nmse('Q4_0'), Q3_A: nmse('Q3_A'), Q2_A: nmse('Q2_A') };
  // measured: 2.9e-5, 7.4e-3, 3.0e-2, 1.1e-1 (native/test/kernel_tests.cpp's test_quant_error, on a product: 2.2e-5,
  // 6.0e-3, 2.5e-2, 1.05e-1)
  expect(got.Q2_A).toBeGreaterThan(got.Q3_A);
  expect(got.Q3_A).toBeGreaterThan(got.Q4_0);
  expect(got.Q4_0).toBeGreaterThan(got.Q8_0);
  expect(got.Q8_0).toBeLessThan(1e-4);
  expect(got.Q4_0).toBeLessThan(1e-2);
  expect(got.Q3_A).toBeLessThan(4e-2);
  expect(got.Q2_A).toBeLessThan(0.15);
});

test('quantizing values that do not fill blocks is refused', () => {
  expect(() => quantize(new Float32Array(40), 'Q8_0')).toThrow('40 values do not fill blocks of 32');
  expect(() => addon.kernels.quantize(new Float32Array(40), 40, 'q4_0')).toThrow('blocks of 32');
  expect(() => quantize(new Float32Array(96), 'Q3_A')).toThrow('96 values do not fill blocks of 64');
  expect(() => addon.kernels.quantize(new Float32Array(96), 96, 'q2_a')).toThrow('K is 96: Q2_A rows are blocks of 64 weights');
});
