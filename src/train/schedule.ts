/**
 * Learning rate at optimizer step `step` (0-based): linear warmup from lr/warmup to lr over `warmup` steps, then a
 * cosine from lr down to minLr at the last step. A pure function of the step, so resume needs no schedule state.
 */
export function learningRate(step: number, s: { lr: number; minLr: number; warmup: number; maxSteps: number }): number {
  if (step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  const decaySteps = Math.max(1, s.maxSteps - s.warmup - 1);
  const progress = Math.min(1, (step - s.warmup) / decaySteps);
  return s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos(Math.PI * progress));
}
