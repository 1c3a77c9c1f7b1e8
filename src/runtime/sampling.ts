/**
 * Token sampling for generation: the draw comes from a seeded generator (src/data Rng), the choice from the addon's
 * `kernels.sample` (greedy when temperature ≤ 0, else temperature + nucleus), so a seed fixes the whole output.
 */
import { Rng } from '../data/random';
import type { NativeKernels } from './native';

export interface SamplingOptions {
  temperature?: number; // ≤ 0: greedy (default 0.8)
  topP?: number; // nucleus mass in (0, 1] (default 1: off)
  seed?: number; // default 0
}

export class Sampler {
  private readonly rng: Rng;
  readonly temperature: number;
  readonly topP: number;

  constructor(private readonly kernels: NativeKernels, options: SamplingOptions = {}) {
    this.temperature = options.temperature ?? 0.8;
    this.topP = options.topP ?? 1;
    if (!Number.isFinite(this.temperature)) throw new RangeError(`temperature must be a finite number, got ${options.temperature}`);
    if (!(this.topP > 0 && this.topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${options.topP}`);
    const seed = options.seed ?? 0;
    if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${options.seed}`);
    this.rng = new Rng(seed >>> 0);
  }

  /** One token from one row of logits [V]. */
  sample(logits: Float32Array): number {
    const u = this.rng.next(); // drawn even when greedy, so switching modes keeps later draws aligned
    return this.kernels.sample(logits, this.temperature, this.topP, u);
  }
}
