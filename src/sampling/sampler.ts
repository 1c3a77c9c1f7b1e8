/**
 * The sampler contract (docs/design.md §10): one definition of "the next token" for every path — `dsmoe sample`
 * (tfjs), `SparseModel.generate` and `dsmoe serve` (the native kernel, native/src/kernels/sampling.cpp) and the CUDA
 * kernel (native/cuda/sampling.cu). This file is the reference; test/fixtures/sampler_vectors.json holds its answers,
 * and every path checks them.
 *
 *   inputs   logits (f32 values), temperature T and top_p P (both taken as f32), seed (a safe integer, used as
 *            uint64: negative → two's complement), counter = index of this token among the sequence's generated
 *            tokens (0, 1, 2, …).
 *   greedy   T ≤ 0: arg-max, ties to the lower id. The counter still advances (the Sampler counts every token).
 *   weights  q_i = exp((l_i − max l) / T)                                             (f64 here; f32 on the GPU)
 *   nucleus  P ≥ 1: τ = 0. Else τ = the largest value with Σ_{q_j ≥ τ} q_j ≥ P · Σ q — always one of the q, and
 *            every token tied with it is kept. Kept set: { i : q_i ≥ τ and q_i > 0 }.
 *   draw     u = uniform(seed, counter) (./uniform.ts), target = u · Σ_{kept} q.
 *   walk     kept ids in increasing id order, summing q: the first id whose running sum exceeds the target;
 *            if rounding leaves none, the last kept id.
 *
 * Walking in id order (not by probability) is what lets the GPU find the token with one block-wide scan and no sort,
 * and the nucleus defined by a threshold τ is the set a bisection on τ finds; so the reference is written the way
 * the fastest path has to work. The test vectors keep every decision at least 1e-4 (relative) away from its
 * boundary, so paths computing in f32 and in f64 give the same tokens.
 */
import { checkCounter, checkSeed, uniform } from './uniform';

/** What decides the distribution (the seed and counter decide the draw). */
export interface SamplingParams {
  /** ≤ 0: greedy (arg-max, ties to the lower id). */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 keeps every token. */
  topP: number;
}

export interface SamplingOptions extends SamplingParams {
  /** Any safe integer; the generator uses it as a uint64. */
  seed: number;
}

/** The contract's signature: the reference below, or the native kernel (`kernels.sample`) with the same meaning. */
export type SampleFunction = (logits: Float32Array, params: SamplingParams, seed: number, counter: number) => number;

/** Checks temperature and top_p; returns them as the f32 values every path computes with. */
export function checkSamplingParams(params: SamplingParams): SamplingParams {
  const { temperature, topP } = params;
  if (typeof temperature !== 'number' || !Number.isFinite(Math.fround(temperature))) {
    throw new RangeError(`temperature must be a finite number (≤ 0 for greedy), got ${temperature}`);
  }
  // top_p is used as an f32, so a positive value that rounds to 0 there is as invalid as 0.
  if (typeof topP !== 'number' || !(topP <= 1 && Math.fround(topP) > 0)) {
    throw new RangeError(`topP must be in (0, 1], got ${topP}`);
  }
  return { temperature: Math.fround(temperature), topP: Math.fround(topP) };
}

/** Checks a whole set of options (params and seed) once, where a sequence starts. */
export function checkSamplingOptions(options: SamplingOptions): SamplingOptions {
  const params = checkSamplingParams(options);
  checkSeed(options.seed);
  return { ...params, seed: options.seed };
}

/** Arg-max, ties to the lower id. */
export function argMax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** The f64 quantities of the contract for one row: weights q, threshold τ, kept mass. Also used by the test vectors' margin checks. */
export interface Nucleus {
  q: Float64Array; // [V] exp((l − max) / T)
  total: number; // Σ q, in id order
  tau: number; // kept iff q ≥ τ and q > 0
  kept: number; // Σ of the kept q, in id order (the walk's order)
}

/** Weights and nucleus of one row at temperature T > 0 (T and P already f32 values). */
export function nucleus(logits: ArrayLike<number>, temperature: number, topP: number): Nucleus {
  const V = logits.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, Math.fround(logits[i]));
  const q = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) total += q[i] = Math.exp((Math.fround(logits[i]) - max) / temperature);
  let tau = 0;
  if (topP < 1) {
    // Sorted values, largest first: τ is the value at which the running mass first reaches P·Σq. Ties need no care:
    // the kept set is "q ≥ τ", so every token equal to τ is in it.
    const sorted = Float64Array.from(q).sort();
    const target = topP * total;
    let mass = 0;
    tau = sorted[0]; // only if rounding keeps the running mass below the target: keep everything
    for (let j = V - 1; j >= 0; j--) {
      mass += sorted[j];
      if (mass >= target) {
        tau = sorted[j];
        break;
      }
    }
  }
  let kept = 0;
  for (let i = 0; i < V; i++) if (q[i] > 0 && q[i] >= tau) kept += q[i];
  return { q, total, tau, kept };
}

/** The walk: the first kept id (increasing id) whose running mass exceeds u · kept; the last kept id if none does. */
export function walk(n: Nucleus, u: number): number {
  const { q, tau } = n;
  const target = u * n.kept;
  let run = 0;
  let last = -1;
  for (let i = 0; i < q.length; i++) {
    if (!(q[i] > 0 && q[i] >= tau)) continue;
    run += q[i];
    last = i;
    if (run > target) return i;
  }
  return last;
}

/** Rejects NaN and +Infinity anywhere and a row with no finite logit; −Infinity (a masked token) is allowed. */
function checkLogits(logits: ArrayLike<number>): void {
  if (logits.length === 0) throw new RangeError('logits must hold at least one value');
  let finite = false;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i];
    if (Number.isNaN(l) || l === Infinity) throw new RangeError(`logits[${i}] is ${l}; logits must be finite or −Infinity`);
    if (l !== -Infinity) finite = true;
  }
  if (!finite) throw new RangeError('logits are all −Infinity: no token can be sampled');
}

/**
 * The reference sampler: token id for one row of logits [V], the parameters, and the draw (seed, counter).
 * O(V) at top_p = 1, one sort of V values otherwise.
 */
export function sampleToken(logits: ArrayLike<number>, params: SamplingParams, seed: number, counter: number): number {
  const { temperature, topP } = checkSamplingParams(params);
  checkSeed(seed);
  checkCounter(counter);
  checkLogits(logits);
  if (temperature <= 0) return argMax(logits);
  return walk(nucleus(logits, temperature, topP), uniform(seed, counter));
}

/**
 * One sequence's sampler: its options and how many tokens it has sampled (the counter). Every token advances the
 * counter, greedy ones too, so a sequence's n-th draw is u(seed, n) whatever came before. `sample` defaults to the
 * reference; the runtime passes the native kernel, which implements the same contract.
 */
export class Sampler {
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number;
  private counter = 0;

  constructor(options: SamplingOptions, private readonly sampleFunction: SampleFunction = sampleToken) {
    const checked = checkSamplingOptions(options);
    this.temperature = checked.temperature;
    this.topP = checked.topP;
    this.seed = checked.seed;
  }

  /** Tokens sampled so far: the counter the next token is drawn with. */
  get tokensSampled(): number {
    return this.counter;
  }

  /** The next token from one row of logits [V]. */
  sample(logits: Float32Array): number {
    const id = this.sampleFunction(logits, { temperature: this.temperature, topP: this.topP }, this.seed, this.counter);
    this.counter++;
    return id;
  }
}
