import { SeededRandom } from './seeded_random';

export interface SamplingOptions {
  /** 0 = greedy (arg-max, ties to the lower id). */
  temperature: number;
  /** Nucleus: keep the smallest set of most likely tokens whose probability reaches top_p. 1 = all. */
  topP: number;
  seed: number;
}

/**
 * Chooses the next token of one request from its logits row. Each request owns one sampler (and so one random
 * stream): the choice is a function of (seed, logits so far) only, whatever else is in the batch.
 */
export class TokenSampler {
  private readonly random: SeededRandom;

  constructor(private readonly options: SamplingOptions) {
    this.random = new SeededRandom(options.seed);
  }

  /** `logits`: one row [V]. */
  sample(logits: Float32Array): number {
    if (this.options.temperature === 0) return argMax(logits);
    const V = logits.length;
    const inverseT = 1 / this.options.temperature;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
    const weights = new Float64Array(V); // unnormalised softmax(logits / T)
    let total = 0;
    for (let i = 0; i < V; i++) {
      weights[i] = Math.exp((logits[i] - max) * inverseT);
      total += weights[i];
    }
    const u = this.random.next();
    if (this.options.topP >= 1) return pickByWeight(weights, total, u);
    // Nucleus: most likely first (ties to the lower id), stop once the kept mass reaches top_p.
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => weights[b] - weights[a] || a - b);
    const target = this.options.topP * total;
    let kept = 0;
    let keptMass = 0;
    while (kept < V && keptMass < target) keptMass += weights[order[kept++]];
    let threshold = u * keptMass;
    for (let r = 0; r < kept; r++) {
      threshold -= weights[order[r]];
      if (threshold < 0) return order[r];
    }
    return order[kept - 1];
  }
}

export function argMax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

function pickByWeight(weights: Float64Array, total: number, u: number): number {
  let threshold = u * total;
  let last = 0;
  for (let i = 0; i < weights.length; i++) {
    if (weights[i] <= 0) continue;
    last = i;
    threshold -= weights[i];
    if (threshold < 0) return i;
  }
  return last; // rounding left a sliver: the last token with any weight
}
