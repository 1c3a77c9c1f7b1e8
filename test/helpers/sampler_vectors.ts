/**
 * The shared sampler test vectors (test/fixtures/sampler_vectors.json): the case list, the generator that turns it
 * into expected tokens with the TypeScript reference (src/sampling), and the margin checks that make the vectors
 * valid for paths computing in f32 (CUDA) as well as in f64 (TypeScript, the C++ kernel).
 *
 * Regenerate after changing a case (the jest test fails while the file differs from what this produces):
 *   UPDATE_SAMPLER_VECTORS=1 npx jest test/sampling/sampler_vectors.test.ts
 *
 * Readers: test/sampling/sampler_vectors.test.ts (the TS reference), test/runtime/native.test.ts (the addon's
 * kernel), native/test/sampling_tests.cpp (the C++ kernel and its twin), native/cuda/test_main.cpp (the CUDA kernel).
 */
import fs from 'node:fs';
import path from 'node:path';
import { nucleus, sampleToken, uniform, uniformBits } from '../../src/sampling';

export const SAMPLER_VECTORS_PATH = path.join(__dirname, '..', 'fixtures', 'sampler_vectors.json');

/** Every decision at least this far (relative) from its boundary, so f32 and f64 paths agree. */
export const MARGIN = 1e-4;

/**
 * u(seed, counter) as 24-bit integers, computed apart from any code in this repository with Python's unbounded
 * integers (a one-off check, not a test dependency):
 *   M = 2**64 - 1
 *   def bits(seed, counter):
 *       z = (seed % 2**64 + 0x9E3779B97F4A7C15 * (counter + 1)) & M
 *       z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
 *       z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
 *       return (z ^ (z >> 31)) >> 40
 * (seed % 2**64 is Python's two's-complement view of a negative seed.)
 */
export const UNIFORM_VECTORS: { seed: number; counter: number; bits: number }[] = [
  { seed: 0, counter: 0, bits: 14819496 },
  { seed: 0, counter: 1, bits: 7239838 },
  { seed: 1, counter: 0, bits: 9505325 },
  { seed: 42, counter: 7, bits: 13432373 },
  { seed: -1, counter: 0, bits: 14997873 },
  { seed: -3, counter: 1000, bits: 868387 },
  { seed: 2 ** 32 + 5, counter: 3, bits: 5916645 },
  { seed: 2 ** 53 - 1, counter: 2 ** 53 - 1, bits: 9588574 },
  { seed: -(2 ** 53 - 1), counter: 12345, bits: 10615275 },
  { seed: 123456789, counter: 0, bits: 2243700 },
];

/**
 * Logits too many to write out: logits[i] = f32(scale · (2·u(seed, i) − 1)) for i < size (u from the contract's
 * generator, so every reader rebuilds them exactly), then each [id, value] of `set` overrides one entry (peaks, ties).
 */
export interface RandomLogits {
  seed: number;
  scale: number;
  size: number;
  set: [number, number][];
}

export interface SamplerCaseSpec {
  name: string;
  logits?: number[];
  random_logits?: RandomLogits;
  temperature: number;
  top_p: number;
  seed: number;
  /** The first counter tried; the generator takes the first one from here whose draw clears the margins. */
  counter: number;
}

export interface SamplerCase extends SamplerCaseSpec {
  token: number;
}

export interface SamplerVectors {
  format: 'dsmoe-sampler-vectors';
  version: 1;
  about: string;
  margin: number;
  uniform: { seed: number; counter: number; bits: number }[];
  cases: SamplerCase[];
}

export function expandLogits(c: { logits?: number[]; random_logits?: RandomLogits }): Float32Array {
  if (c.logits) return Float32Array.from(c.logits);
  const r = c.random_logits!;
  const out = new Float32Array(r.size);
  for (let i = 0; i < r.size; i++) out[i] = r.scale * (2 * uniform(r.seed, i) - 1);
  for (const [id, value] of r.set) out[id] = value;
  return out;
}

const NEG = -Infinity;
/** A handful of large-V rows shaped like a language model's: a flat bulk far below a few peaks spread over the ids. */
function peaked(seed: number, size: number, peaks: [number, number][]): RandomLogits {
  return { seed, scale: 4, size, set: peaks };
}

export const SAMPLER_CASES: SamplerCaseSpec[] = [
  // one token, two tied tokens
  { name: 'V1', logits: [0.5], temperature: 1, top_p: 1, seed: 0, counter: 0 },
  { name: 'V1 greedy', logits: [-3], temperature: 0, top_p: 1, seed: 0, counter: 0 },
  { name: 'V2 tie', logits: [1, 1], temperature: 1, top_p: 1, seed: 0, counter: 0 },
  { name: 'V2 tie other draw', logits: [1, 1], temperature: 1, top_p: 1, seed: 123456789, counter: 0 },
  // greedy: ties to the lower id, negative temperature is greedy too
  { name: 'greedy tie', logits: [1, 3, 3, 2], temperature: 0, top_p: 1, seed: 5, counter: 3 },
  { name: 'greedy negative T', logits: [1, 3, 3, 2], temperature: -1, top_p: 0.5, seed: -1, counter: 0 },
  { name: 'greedy last', logits: [-2, -1, 0, 0.25], temperature: 0, top_p: 1, seed: 0, counter: 9 },
  // the serve test's row: p ≈ [.04, .30, .27, .01, .30] at T = 1
  { name: 'five T1 P1', logits: [0.1, 2, 1.9, -1, 2], temperature: 1, top_p: 1, seed: 0, counter: 0 },
  { name: 'five T1 P1 counter1', logits: [0.1, 2, 1.9, -1, 2], temperature: 1, top_p: 1, seed: 0, counter: 1 },
  { name: 'five T0.7 P0.9', logits: [0.1, 2, 1.9, -1, 2], temperature: 0.7, top_p: 0.9, seed: 42, counter: 7 },
  { name: 'five T1.5 P0.5', logits: [0.1, 2, 1.9, -1, 2], temperature: 1.5, top_p: 0.5, seed: -3, counter: 1000 },
  { name: 'five tiny P tie', logits: [0.1, 2, 1.9, -1, 2], temperature: 1, top_p: 1e-6, seed: 2 ** 32 + 5, counter: 3 },
  { name: 'five tiny P tie 2', logits: [0.1, 2, 1.9, -1, 2], temperature: 1, top_p: 1e-6, seed: 77, counter: 0 },
  // every token tied: a probability-ordered nucleus of 0.5 would keep half; the threshold keeps all
  { name: 'all tied P0.5', logits: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], temperature: 1, top_p: 0.5, seed: 2024, counter: 0 },
  // the boundary falls inside a tied group: the whole group is kept
  { name: 'tied group at tau', logits: [3, 2, 2, 2, 0, 2], temperature: 1, top_p: 0.5, seed: 9, counter: 2 },
  // masked tokens (−Infinity) are never drawn
  { name: 'masked', logits: [NEG, 1, NEG, 0.5, NEG], temperature: 1, top_p: 1, seed: -(2 ** 53 - 1), counter: 12345 },
  { name: 'masked P0.9', logits: [NEG, 1, NEG, 0.5, 0.75], temperature: 0.7, top_p: 0.9, seed: 11, counter: 1 },
  // random rows, written out
  ...[0, 1, 2].map((k) => ({
    name: `V100 T${[0.7, 1, 1.5][k]}`,
    random_logits: { seed: 100 + k, scale: 4, size: 100, set: [] },
    temperature: [0.7, 1, 1.5][k],
    top_p: [1, 0.9, 0.5][k],
    seed: [0, -1, 2 ** 32 + 1][k],
    counter: [0, 1, 2 ** 40][k],
  })),
  { name: 'V1000 T1 P1', random_logits: { seed: 1000, scale: 4, size: 1000, set: [] }, temperature: 1, top_p: 1, seed: 1234, counter: 0 },
  { name: 'V1000 T0.7 P0.9', random_logits: { seed: 1001, scale: 4, size: 1000, set: [] }, temperature: 0.7, top_p: 0.9, seed: -77, counter: 63 },
  { name: 'V1000 T1.5 P0.5', random_logits: { seed: 1002, scale: 4, size: 1000, set: [] }, temperature: 1.5, top_p: 0.5, seed: 2 ** 53 - 1, counter: 2 ** 53 - 1 },
  { name: 'V1000 tiny T', random_logits: { seed: 1003, scale: 4, size: 1000, set: [] }, temperature: 0.001, top_p: 1, seed: 3, counter: 4 },
  { name: 'V1000 greedy', random_logits: { seed: 1004, scale: 4, size: 1000, set: [] }, temperature: 0, top_p: 0.9, seed: 0, counter: 0 },
  { name: 'V2000 T1 P0.9', random_logits: { seed: 2000, scale: 8, size: 2000, set: [] }, temperature: 1, top_p: 0.9, seed: 8, counter: 100 },
  // large vocabularies: peaks spread over the ids, so the GPU's block scan crosses many threads' slices
  // (`lift` raises the peaks so that the nucleus boundary falls between peaks, not inside the dense bulk)
  ...[
    { size: 32000, T: 1, P: 1, lift: 12, seed: 0, counter: 0 },
    { size: 32000, T: 0.7, P: 0.9, lift: 16, seed: -2, counter: 17 },
    { size: 32000, T: 1.5, P: 0.5, lift: 20, seed: 2 ** 33, counter: 5 },
    { size: 50257, T: 1, P: 0.9, lift: 16, seed: 99, counter: 2 ** 31 },
    { size: 50257, T: 0.7, P: 1, lift: 10, seed: -(2 ** 40), counter: 1 },
    { size: 50257, T: 1, P: 1e-9, lift: 12, seed: 6, counter: 6 },
  ].map((c, k) => ({
    name: `V${c.size} T${c.T} P${c.P}`,
    random_logits: peaked(30000 + k, c.size, [
      [5, c.lift],
      [1234, c.lift - 0.5],
      [c.size >> 1, c.lift + 0.25],
      [c.size - 7000, c.lift - 1.25],
      [c.size - 1, c.lift - 1],
    ]),
    temperature: c.T,
    top_p: c.P,
    seed: c.seed,
    counter: c.counter,
  })),
  // a tie for the maximum at both ends of a large vocabulary
  { name: 'V50000 greedy tie', random_logits: peaked(40000, 50000, [[10, 20], [49999, 20]]), temperature: 0, top_p: 1, seed: 0, counter: 0 },
  { name: 'V50000 tied peaks tiny P', random_logits: peaked(40001, 50000, [[10, 20], [49999, 20]]), temperature: 0.05, top_p: 1e-6, seed: 1, counter: 0 },
  { name: 'V50000 tied peaks other draw', random_logits: peaked(40001, 50000, [[10, 20], [49999, 20]]), temperature: 0.05, top_p: 1e-6, seed: 123456789, counter: 0 },
];

/** Why one draw of one row is too close to a boundary for f32 to be trusted, or null when it is clear. */
export function marginProblem(
  logits: Float32Array,
  temperature: number,
  topP: number,
  u: number,
  margin = MARGIN,
  only: 'nucleus' | 'all' = 'all',
): string | null {
  const T = Math.fround(temperature);
  const P = Math.fround(topP);
  if (T <= 0) return null; // greedy compares the f32 logits themselves: exact on every path
  const n = nucleus(logits, T, P);
  const { q, tau } = n;
  if (P < 1) {
    if (tau < 1e-30) return `τ = ${tau} is below f32's normal range`;
    const target = P * n.total;
    let massAtTau = 0;
    let next = Infinity; // the smallest value above τ
    for (const v of q) {
      if (v >= tau) massAtTau += v;
      if (v > tau) next = Math.min(next, v);
      if (v !== tau && Math.abs(v - tau) < margin * tau) return `a weight ${v} lies within ${margin} of τ = ${tau}`;
    }
    if (massAtTau - target < margin * n.total) return `the mass kept at τ exceeds top_p·Σq by only ${(massAtTau - target) / n.total} of Σq`;
    if (next !== Infinity) {
      let massAbove = 0;
      for (const v of q) if (v >= next) massAbove += v;
      if (target - massAbove < margin * n.total) return `the mass above τ falls short of top_p·Σq by only ${(target - massAbove) / n.total} of Σq`;
    }
  }
  if (only === 'nucleus') return null;
  const target = u * n.kept;
  let run = 0;
  let nearest = Math.abs(target);
  for (let i = 0; i < q.length; i++) {
    if (!(q[i] > 0 && q[i] >= tau)) continue;
    run += q[i];
    nearest = Math.min(nearest, Math.abs(target - run));
  }
  if (nearest < margin * n.kept) return `u·Σkept lies ${nearest / n.kept} of Σkept from a running sum`;
  return null;
}

/** Expected tokens for every case (the reference sampler), each draw moved past any counter too close to a boundary. */
export function buildSamplerVectors(): SamplerVectors {
  for (const v of UNIFORM_VECTORS) {
    const got = uniformBits(v.seed, v.counter);
    if (got !== v.bits) throw new Error(`uniformBits(${v.seed}, ${v.counter}) = ${got}, the independent value is ${v.bits}`);
  }
  const cases = SAMPLER_CASES.map((spec): SamplerCase => {
    // A nucleus boundary too close to call moves a random row to its next logits seed; a draw too close to a
    // running sum moves to the next counter. Both searches are deterministic, and the file records where they end.
    for (let attempt = 0; attempt < 100; attempt++) {
      const row: SamplerCaseSpec = spec.random_logits ? { ...spec, random_logits: { ...spec.random_logits, seed: spec.random_logits.seed + attempt } } : spec;
      const logits = expandLogits(row);
      const nucleusProblem = marginProblem(logits, row.temperature, row.top_p, 0.5, MARGIN, 'nucleus');
      if (nucleusProblem !== null) {
        if (!row.random_logits) throw new Error(`sampler vector "${spec.name}": ${nucleusProblem}; change the case`);
        continue;
      }
      for (let counter = row.counter; counter < row.counter + 100; counter++) {
        if (marginProblem(logits, row.temperature, row.top_p, uniform(row.seed, counter)) !== null) continue;
        const token = sampleToken(logits, { temperature: row.temperature, topP: row.top_p }, row.seed, counter);
        return { ...row, counter, token };
      }
      throw new Error(`sampler vector "${spec.name}": no counter within 100 of ${spec.counter} clears the margins`);
    }
    throw new Error(`sampler vector "${spec.name}": no logits seed within 100 clears the nucleus margins; change the case`);
  });
  return {
    format: 'dsmoe-sampler-vectors',
    version: 1,
    about:
      'Expected tokens of the sampler contract (docs/design.md §10) from src/sampling/sampler.ts, every decision at least `margin` (relative) from its boundary. Made by test/helpers/sampler_vectors.ts: UPDATE_SAMPLER_VECTORS=1 npx jest test/sampling/sampler_vectors.test.ts',
    margin: MARGIN,
    uniform: UNIFORM_VECTORS,
    cases,
  };
}

/** JSON with one line per vector, so a change to one case is a one-line diff. −Infinity is written as the string "-inf". */
export function formatSamplerVectors(v: SamplerVectors): string {
  const line = (x: unknown) => JSON.stringify(x, (_k, value) => (value === -Infinity ? '-inf' : value));
  const head = Object.entries(v)
    .filter(([k]) => k !== 'uniform' && k !== 'cases')
    .map(([k, value]) => `  ${JSON.stringify(k)}: ${line(value)}`);
  return [
    '{',
    ...head.map((h) => h + ','),
    '  "uniform": [',
    v.uniform.map((u) => '    ' + line(u)).join(',\n'),
    '  ],',
    '  "cases": [',
    v.cases.map((c) => '    ' + line(c)).join(',\n'),
    '  ]',
    '}',
    '',
  ].join('\n');
}

export function readSamplerVectors(): SamplerVectors {
  const text = fs.readFileSync(SAMPLER_VECTORS_PATH, 'utf8');
  return JSON.parse(text, (_k, value) => (value === '-inf' ? -Infinity : value)) as SamplerVectors;
}
