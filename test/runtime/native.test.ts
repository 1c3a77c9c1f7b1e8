/**
 * Every kernel the addon exposes, against a naive TypeScript reference (float64 accumulation), on random inputs
 * with sizes that are not multiples of the vector width, on 1 and 3 threads, and on every SIMD level the CPU has.
 * Metric: normalised MSE Σ(a−b)²/Σb², hard failure on NaN. Tolerances: 1e-10 for f32 kernels (float32 rounding
 * only), the same for bf16/f16 products because the reference reads the same rounded weights.
 */
import { f32ToBf16, bf16ToF32, f32ToF16, f16ToF32 } from '../../src/checkpoint/safetensors';
import { loadNative, type KernelWeights, type Simd, type WeightDtype } from '../../src/runtime/native';

const addon = loadNative();
const k = addon.kernels;

let seed = 12345;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
}
function randn(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() + rand() + rand() - 1.5) * 2 * scale;
  return out;
}

function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(got[i]) || Number.isNaN(want[i])) return Infinity;
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return den > 0 ? num / den : num;
}

/** Weights of a dtype: the raw array for the kernel and the widened values the reference uses. */
function weights(n: number, dtype: WeightDtype, scale = 0.5): { raw: KernelWeights; f32: Float32Array } {
  const f = randn(n, scale);
  if (dtype === 'f32') return { raw: f, f32: f };
  const raw = dtype === 'bf16' ? f32ToBf16(f) : f32ToF16(f);
  return { raw, f32: dtype === 'bf16' ? bf16ToF32(raw) : f16ToF32(raw) };
}

/**
 * Random GGUF blocks (random f16 scales and random quants, not a quantizer's output) and their values by the
 * format's rules: Q8_0 = f16 d, 32 × int8 q, w = d·q; Q4_0 = f16 d, 16 bytes, w[j] = d·((b[j] & 15) − 8),
 * w[j + 16] = d·((b[j] >> 4) − 8).
 */
function quantizedWeights(n: number, dtype: 'q8_0' | 'q4_0'): { raw: Uint8Array; f32: Float32Array } {
  const blockBytes = dtype === 'q8_0' ? 34 : 18;
  const raw = new Uint8Array((n / 32) * blockBytes);
  const f32 = new Float32Array(n);
  for (let b = 0; b < n / 32; b++) {
    const at = b * blockBytes;
    const scale = f32ToF16(new Float32Array([(0.5 + rand()) * 0.01]));
    raw[at] = scale[0] & 0xff;
    raw[at + 1] = scale[0] >> 8;
    const d = f16ToF32(scale)[0];
    for (let j = 0; j < blockBytes - 2; j++) raw[at + 2 + j] = Math.floor(rand() * 256);
    for (let j = 0; j < 32; j++) {
      if (dtype === 'q8_0') f32[b * 32 + j] = d * ((raw[at + 2 + j] << 24) >> 24);
      else f32[b * 32 + j] = d * (((j < 16 ? raw[at + 2 + j] : raw[at + 2 + j - 16] >> 4) & 15) - 8);
    }
  }
  return { raw, f32 };
}

// --- naive references ---------------------------------------------------------------------------------------

function linearRef(X: Float32Array, M: number, K: number, W: Float32Array, N: number, bias?: Float32Array): Float32Array {
  const Y = new Float32Array(M * N); // [M, N]
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let acc = bias ? bias[n] : 0;
      for (let i = 0; i < K; i++) acc += X[m * K + i] * W[n * K + i];
      Y[m * N + n] = acc;
    }
  return Y;
}

function rmsnormRef(x: Float32Array, w: Float32Array, T: number, d: number, eps: number): Float32Array {
  const out = new Float32Array(T * d);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[t * d + j] ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) out[t * d + j] = x[t * d + j] * inv * w[j];
  }
  return out;
}

function ropeRef(x: Float32Array, T: number, heads: number, hd: number, pos: Int32Array, theta: number): Float32Array {
  const out = x.slice();
  const half = hd / 2;
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const angle = pos[t] * Math.pow(theta, (-2 * i) / hd);
        const o = (t * heads + h) * hd;
        const a = x[o + i];
        const b = x[o + i + half];
        out[o + i] = a * Math.cos(angle) - b * Math.sin(angle);
        out[o + i + half] = b * Math.cos(angle) + a * Math.sin(angle);
      }
  return out;
}

function softmax(row: ArrayLike<number>): number[] {
  const max = Math.max(...Array.from(row));
  const e = Array.from(row, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

const silu = (g: number) => g / (1 + Math.exp(-g));

// --- tests ------------------------------------------------------------------------------------------------------

const levels: Simd[] = (['scalar', 'avx2', 'avx512'] as Simd[]).filter((l) => {
  const order = ['scalar', 'neon', 'avx2', 'avx512'];
  const detected = addon.cpuInfo().detected;
  return l === 'scalar' || (detected !== 'neon' && order.indexOf(l) <= order.indexOf(detected));
});

afterAll(() => addon.setSimd(addon.cpuInfo().detected));

describe.each(levels)('kernels at SIMD level %s', (level) => {
  beforeAll(() => expect(addon.setSimd(level)).toBe(level));

  test.each([1, 3])('linear (GEMV and GEMM paths, every dtype, bias) on %i thread(s)', (threads) => {
    for (const dtype of ['f32', 'bf16', 'f16'] as WeightDtype[])
      for (const [M, K, N] of [[1, 37, 29], [3, 64, 17], [4, 129, 33], [5, 40, 70], [17, 23, 45]]) {
        const W = weights(N * K, dtype);
        const X = randn(M * K);
        const bias = randn(N);
        const want = linearRef(X, M, K, W.f32, N, bias);
        addon.setInt8GemvRows(0); // activations in f32: only the summation order differs
        for (const impl of ['ref', 'fast', 'gemv', 'gemm'] as const) {
          expect(nmse(k.linear(X, M, K, W.raw, dtype, N, { impl, threads, bias }), want)).toBeLessThan(1e-10);
        }
        addon.setInt8GemvRows(4);
        // The int8 GEMV serves quantized weights only: f32 / bf16 / f16 keep f32 activations at every batch.
        for (const impl of ['fast', 'gemv'] as const) {
          expect(nmse(k.linear(X, M, K, W.raw, dtype, N, { impl, threads, bias }), want)).toBeLessThan(1e-10);
        }
      }
  });

  test.each([1, 3])('linear over q8_0 / q4_0 blocks equals "dequantize (GGUF rules, in TypeScript), then the product" on %i thread(s)', (threads) => {
    for (const dtype of ['q8_0', 'q4_0'] as const)
      for (const [M, K, N] of [[1, 32, 29], [3, 64, 17], [4, 288, 33], [5, 96, 70], [17, 256, 45]]) {
        const W = quantizedWeights(N * K, dtype);
        const X = randn(M * K);
        const bias = randn(N);
        const want = linearRef(X, M, K, W.f32, N, bias);
        addon.setInt8GemvRows(0); // activations in f32: only the summation order differs
        for (const impl of ['ref', 'fast', 'gemv', 'gemm'] as const) {
          expect(nmse(k.linear(X, M, K, W.raw, dtype, N, { impl, threads, bias }), want)).toBeLessThan(1e-10);
        }
        addon.setInt8GemvRows(4);
        // The int8 GEMV (batches ≤ 4, the default): activations rounded to Q8 blocks cost nMSE ≈ 2e-5 (design.md §5).
        if (M <= 4)
          for (const impl of ['fast', 'gemv'] as const) {
            const got = nmse(k.linear(X, M, K, W.raw, dtype, N, { impl, threads, bias }), want);
            expect(got).toBeGreaterThan(1e-10);
            expect(got).toBeLessThan(1e-4);
          }
      }
  });

  test('gemm with every transpose combination', () => {
    for (const [M, N, K] of [[1, 19, 23], [7, 33, 9], [20, 5, 31]])
      for (const ta of [false, true])
        for (const tb of [false, true]) {
          const A = randn(M * K);
          const B = randn(K * N);
          const want = new Float32Array(M * N);
          for (let m = 0; m < M; m++)
            for (let n = 0; n < N; n++) {
              let acc = 0;
              for (let i = 0; i < K; i++) acc += (ta ? A[i * M + m] : A[m * K + i]) * (tb ? B[n * K + i] : B[i * N + n]);
              want[m * N + n] = acc;
            }
          expect(nmse(k.gemm(A, B, M, N, K, ta, tb, { threads: 3 }), want)).toBeLessThan(1e-10);
          expect(nmse(k.gemm(A, B, M, N, K, ta, tb, { impl: 'ref' }), want)).toBeLessThan(1e-10);
        }
  });

  test('gemm over a batch with broadcast entries, written into out; bad batch options are refused', () => {
    const [M, N, K, count] = [5, 7, 6, 4];
    const A = randn(2 * M * K); // 2 entries, read as 1, 0, 1, 1
    const B = randn(count * N * K); // transposed entries, one per output entry
    const aIndex = Int32Array.from([1, 0, 1, 1]);
    const out = new Float32Array(count * M * N).fill(Number.NaN);
    expect(k.gemm(A, B, M, N, K, false, true, { threads: 3, out, count, aIndex })).toBe(out);
    for (let e = 0; e < count; e++) {
      const one = k.gemm(A.subarray(aIndex[e] * M * K, (aIndex[e] + 1) * M * K), B.subarray(e * N * K, (e + 1) * N * K), M, N, K, false, true, { impl: 'ref' });
      expect(nmse(out.subarray(e * M * N, (e + 1) * M * N), one)).toBeLessThan(1e-10);
    }
    expect(() => k.gemm(A, B, M, N, K, false, true, { count, aIndex: Int32Array.from([0, 1]) })).toThrow(/aIndex must be an Int32Array of count entries/);
    expect(() => k.gemm(A, B, M, N, K, false, true, { count, aIndex: Int32Array.from([0, -1, 0, 0]) })).toThrow(/aIndex has a negative entry/);
    expect(() => k.gemm(A, B, M, N, K, false, true, { count, aIndex: Int32Array.from([0, 2, 0, 0]) })).toThrow(/A has \d+ elements/);
    expect(() => k.gemm(A, B, M, N, K, false, true, { count, aIndex, out: new Float32Array(M * N) })).toThrow(/out must be a Float32Array/);
    expect(() => k.gemm(A, B, M, N, K, false, true, { count: 1, out: B })).toThrow(/out overlaps A or B/);
  });

  test('embedding rows, widened exactly', () => {
    for (const dtype of ['f32', 'bf16', 'f16'] as WeightDtype[]) {
      const V = 13;
      const d = 19;
      const table = weights(V * d, dtype);
      const ids = new Int32Array([0, 12, 5, 5, 7]);
      const want = new Float32Array(ids.length * d);
      ids.forEach((id, t) => want.set(table.f32.subarray(id * d, (id + 1) * d), t * d));
      expect(Array.from(k.embedding(table.raw, dtype, V, d, ids, { threads: 3 }))).toEqual(Array.from(want));
    }
  });

  test('rmsnorm', () => {
    for (const d of [1, 7, 64, 77]) {
      const x = randn(5 * d);
      const w = randn(d);
      const want = rmsnormRef(x, w, 5, d, 1e-6);
      expect(nmse(k.rmsnorm(x, w, 5, d, 1e-6, { threads: 3 }), want)).toBeLessThan(1e-10);
      expect(nmse(k.rmsnorm(x, w, 5, d, 1e-6, { impl: 'ref' }), want)).toBeLessThan(1e-10);
    }
  });

  test('rope (rotate_half) at large positions', () => {
    const T = 4;
    const heads = 3;
    const hd = 10;
    const x = randn(T * heads * hd);
    const pos = new Int32Array([0, 1, 100, 4095]);
    const want = ropeRef(x, T, heads, hd, pos, 10000);
    expect(nmse(k.rope(x, T, heads, hd, pos, 10000, { threads: 3 }), want)).toBeLessThan(1e-10);
    expect(nmse(k.rope(x, T, heads, hd, pos, 10000, { impl: 'ref' }), want)).toBeLessThan(1e-10);
  });

  test('GQA attention over a two-slot cache, prefill and decode rows mixed', () => {
    for (const hd of [8, 13]) {
      const H = 4;
      const KV = 2;
      const S = 2;
      const C = 24;
      const q = randn(5 * H * hd);
      const kc = randn(S * C * KV * hd);
      const vc = randn(S * C * KV * hd);
      const slots = new Int32Array([0, 0, 1, 1, 0]);
      const pos = new Int32Array([0, 1, 17, 23, 2]);
      const want = new Float32Array(5 * H * hd);
      for (let t = 0; t < 5; t++)
        for (let h = 0; h < H; h++) {
          const g = Math.floor(h / (H / KV));
          const scores: number[] = [];
          for (let p = 0; p <= pos[t]; p++) {
            let dot = 0;
            for (let i = 0; i < hd; i++) dot += q[(t * H + h) * hd + i] * kc[((slots[t] * C + p) * KV + g) * hd + i];
            scores.push(dot / Math.sqrt(hd));
          }
          const w = softmax(scores);
          for (let i = 0; i < hd; i++) {
            let acc = 0;
            for (let p = 0; p <= pos[t]; p++) acc += w[p] * vc[((slots[t] * C + p) * KV + g) * hd + i];
            want[(t * H + h) * hd + i] = acc;
          }
        }
      expect(nmse(k.attention(q, kc, vc, slots, pos, 5, H, KV, hd, S, C, { threads: 3 }), want)).toBeLessThan(1e-10);
      expect(nmse(k.attention(q, kc, vc, slots, pos, 5, H, KV, hd, S, C, { impl: 'ref' }), want)).toBeLessThan(1e-10);
    }
  });

  test('swiglu', () => {
    const gu = randn(3 * 2 * 11);
    const want = new Float32Array(3 * 11);
    for (let r = 0; r < 3; r++) for (let i = 0; i < 11; i++) want[r * 11 + i] = silu(gu[r * 22 + i]) * gu[r * 22 + 11 + i];
    expect(nmse(k.swiglu(gu, 3, 11), want)).toBeLessThan(1e-10);
  });

  test('combine (scatter-add of weighted expert rows into their tokens)', () => {
    const rows = new Int32Array([2, 0, 2, 1, 0, 2, 3]);
    const d = 19;
    const out = randn(rows.length * d);
    const want = new Float32Array(4 * d);
    rows.forEach((t, r) => {
      for (let j = 0; j < d; j++) want[t * d + j] += out[r * d + j];
    });
    expect(nmse(k.combine(out, rows, 4, d, { threads: 3 }), want)).toBeLessThan(1e-12);
    expect(nmse(k.combine(out, rows, 4, d, { impl: 'ref' }), want)).toBeLessThan(1e-12);
  });

  test.each([1, 4, 5, 17, 33])('routed experts (grouped, fused gate+up, weighted down, combine) with %i tokens', (T) => {
    for (const dtype of ['f32', 'bf16'] as WeightDtype[]) {
      const E = 5;
      const d = 21;
      const I = 9;
      const slotOf = new Int32Array([0, 1, -1, 2, 3]); // expert 2 pruned
      const gateUp = weights(4 * 2 * I * d, dtype, 0.3);
      const down = weights(4 * d * I, dtype, 0.3);
      const x = randn(T * d);
      const p = k.softmax(randn(T * E), T, E);
      const sel = k.select(p, T, E, { mode: 'topk', k: 2, allowed: new Uint8Array([1, 1, 0, 1, 1]) });
      const g = k.groupByExpert(sel.ids, sel.weights, sel.count, T, E, E);
      const want = new Float32Array(T * d);
      for (let t = 0; t < T; t++)
        for (let j = 0; j < sel.count[t]; j++) {
          const e = sel.ids[t * E + j];
          const s = slotOf[e];
          expect(s).toBeGreaterThanOrEqual(0);
          const xr = x.subarray(t * d, (t + 1) * d);
          const gu = linearRef(xr, 1, d, gateUp.f32.subarray(s * 2 * I * d, (s + 1) * 2 * I * d), 2 * I);
          const h = new Float32Array(I).map((_, i) => silu(gu[i]) * gu[I + i]);
          const y = linearRef(h, 1, I, down.f32.subarray(s * d * I, (s + 1) * d * I), d);
          for (let i = 0; i < d; i++) want[t * d + i] += sel.weights[t * E + j] * y[i];
        }
      for (const impl of ['ref', 'fast'] as const) {
        const got = k.moeFfn(x, T, d, I, gateUp.raw, down.raw, dtype, E, slotOf, g.offsets, g.rows, g.rowWeight, { impl, threads: 3 });
        expect(nmse(got, want)).toBeLessThan(1e-10);
      }
    }
  });
});

describe('routing and sampling kernels', () => {
  test('softmax rows', () => {
    const x = randn(3 * 7, 3);
    const got = k.softmax(x, 3, 7);
    for (let t = 0; t < 3; t++) expect(nmse(got.subarray(t * 7, (t + 1) * 7), softmax(x.subarray(t * 7, (t + 1) * 7)))).toBeLessThan(1e-12);
  });

  /** The selection rules of design.md §1 written out naively. */
  function selectRef(p: number[], rule: { mode: string; k?: number; epsilon?: number; kMax?: number; renormalize?: boolean; allowed?: number[] }) {
    const E = p.length;
    const order = p.map((_, e) => e).filter((e) => !rule.allowed || rule.allowed[e]).sort((a, b) => p[b] - p[a] || a - b);
    let n = order.length;
    if (rule.mode === 'topk') n = Math.min(n, rule.k!);
    if (rule.mode === 'threshold') {
      let keep = 0;
      while (keep < n && keep < (rule.kMax || E) && E * p[order[keep]] > rule.epsilon!) keep++;
      n = Math.max(Math.min(n, 1), keep);
    }
    const ids = order.slice(0, n);
    const sum = ids.reduce((a, e) => a + p[e], 0);
    return { ids, weights: ids.map((e) => (rule.renormalize ? p[e] / sum : p[e])) };
  }

  test('select: top-k (ties to lower id), threshold (arg-max kept, k_max), pruning, renormalisation', () => {
    const T = 40;
    const E = 8;
    // Quantised probabilities so that ties occur.
    const logits = new Float32Array(T * E).map(() => Math.round(rand() * 4) / 2);
    const p = k.softmax(logits, T, E);
    const allowed = [1, 1, 0, 1, 1, 1, 0, 1];
    const rules = [
      { mode: 'topk', k: 2 },
      { mode: 'topk', k: 3, renormalize: true },
      { mode: 'topk', k: 2, allowed },
      { mode: 'threshold', epsilon: 1.0 },
      { mode: 'threshold', epsilon: 0.48, kMax: 3 },
      { mode: 'threshold', epsilon: 5 }, // nothing passes: the arg-max alone
      { mode: 'dense' },
      { mode: 'dense', allowed },
    ] as const;
    for (const rule of rules) {
      const got = k.select(p, T, E, { ...rule, allowed: 'allowed' in rule ? new Uint8Array(rule.allowed) : undefined });
      for (let t = 0; t < T; t++) {
        const want = selectRef(Array.from(p.subarray(t * E, (t + 1) * E)), rule as never);
        const n = got.count[t];
        expect(Array.from(got.ids.subarray(t * E, t * E + n))).toEqual(want.ids);
        expect(nmse(got.weights.subarray(t * E, t * E + n), want.weights)).toBeLessThan(1e-12);
      }
    }
  });

  test('groupByExpert: counts, prefix sums and a token-sorted permutation', () => {
    const T = 9;
    const cap = 3;
    const E = 4;
    const ids = new Int32Array(T * cap);
    const weights = new Float32Array(T * cap);
    const count = new Int32Array(T);
    for (let t = 0; t < T; t++) {
      count[t] = 1 + (t % cap);
      for (let j = 0; j < count[t]; j++) {
        ids[t * cap + j] = (t + j) % E;
        weights[t * cap + j] = t + j / 10;
      }
    }
    const g = k.groupByExpert(ids, weights, count, T, cap, E);
    const want: [number, number][][] = Array.from({ length: E }, () => []);
    for (let t = 0; t < T; t++) for (let j = 0; j < count[t]; j++) want[ids[t * cap + j]].push([t, weights[t * cap + j]]);
    expect(Array.from(g.counts)).toEqual(want.map((w) => w.length));
    let offset = 0;
    for (let e = 0; e < E; e++) {
      expect(g.offsets[e]).toBe(offset);
      for (const [i, [t, w]] of want[e].entries()) {
        expect(g.rows[offset + i]).toBe(t);
        expect(g.rowWeight[offset + i]).toBeCloseTo(w, 6);
      }
      offset += want[e].length;
    }
    expect(g.offsets[E]).toBe(offset);
  });

  test('machine measurements are positive and finite', () => {
    const info = addon.cpuInfo();
    expect(['avx512', 'avx2', 'neon', 'scalar']).toContain(info.simd);
    expect(info.threads).toBeGreaterThan(0);
    const bw = addon.memoryBandwidthGBs(16 << 20, 2);
    expect(bw).toBeGreaterThan(0.1);
    expect(Number.isFinite(bw)).toBe(true);
  });

  test('kernels reject wrong types and short arrays with exceptions', () => {
    expect(() => k.linear(new Float32Array(3), 2, 2, new Float32Array(4), 'f32', 2)).toThrow(/X has 3 elements, needs at least 4/);
    expect(() => k.linear(new Float32Array(4), 2, 2, new Uint16Array(4), 'f32', 2)).toThrow(/W must be a Float32Array/);
    expect(() => k.linear(new Float32Array(4), 2, 2, new Float32Array(4), 'f64' as WeightDtype, 2)).toThrow(/dtype/);
    expect(() => k.linear(new Float32Array(80), 2, 40, new Uint8Array(1000), 'q8_0', 2)).toThrow(/K is 40: Q8_0 rows are blocks of 32 weights/);
    expect(() => k.linear(new Float32Array(64), 2, 32, new Uint8Array(35), 'q4_0', 2)).toThrow(/W has 35 elements, needs at least 36/);
    expect(() => k.linear(new Float32Array(64), 2, 32, new Uint16Array(36), 'q4_0', 2)).toThrow(/W must be a Uint8Array/);
    expect(() => k.embedding(new Uint8Array(34), 'q8_0' as WeightDtype, 1, 32, new Int32Array([0]))).toThrow(/embedding tables are f32, bf16 or f16/);
    expect(() => k.embedding(new Float32Array(4), 'f32', 2, 2, new Int32Array([2]))).toThrow(/out of range/);
  });
});
