import { Rng } from '../data';

/**
 * Draws a token id from logits with temperature and nucleus (top-p) sampling; temperature 0 = greedy (arg-max,
 * ties to the lower id).
 */
export function sampleToken(logits: ArrayLike<number>, temperature: number, topP: number, rng: Rng): number {
  const n = logits.length;
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[i]);
  const probs = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += probs[i] = Math.exp((logits[i] - max) / temperature);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  // Smallest set of most probable tokens whose mass reaches top_p.
  let kept = 0;
  let mass = 0;
  while (kept < n && mass < topP * sum) mass += probs[order[kept++]];
  let draw = rng.next() * mass;
  for (let j = 0; j < kept; j++) {
    draw -= probs[order[j]];
    if (draw < 0) return order[j];
  }
  return order[kept - 1];
}
