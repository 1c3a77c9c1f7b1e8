/**
 * Token sampling for generation: the shared sampler contract (src/sampling) with the addon's `kernels.sample` doing
 * the work, so `SparseModel.generate` and `dsmoe serve` draw exactly the tokens the TypeScript reference would for
 * the same seed (both are checked against test/fixtures/sampler_vectors.json).
 */
import { Sampler } from '../sampling';
import type { NativeKernels } from './native';

export interface SamplingOptions {
  temperature?: number; // ≤ 0: greedy (default 0.8)
  topP?: number; // nucleus mass in (0, 1] (default 1: off)
  seed?: number; // any safe integer (default 0)
}

/** One sequence's sampler on the native kernel; throws a RangeError naming a bad option. */
export function nativeSampler(kernels: NativeKernels, options: SamplingOptions = {}): Sampler {
  return new Sampler(
    { temperature: options.temperature ?? 0.8, topP: options.topP ?? 1, seed: options.seed ?? 0 },
    (logits, params, seed, counter) => kernels.sample(logits, params.temperature, params.topP, seed, counter),
  );
}
