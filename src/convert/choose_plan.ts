import type { PlanChoice, PlanChoicePoint } from '../plan/plan_format';

/**
 * The converter's default: the cheapest routing whose calibration loss stays within a relative bound of dense.
 * Cheapest = fewest active parameters per token (the mean experts per token each routing measured on the same
 * tokens; the runtime's threshold path costs the same per expert as top-k). Ties go to the lower loss, then to the
 * simpler rule (top-k, then threshold-topk, then threshold). Top-k with k = E is the dense model, so some point
 * always meets the bound; were none to (a sweep without it), the lowest loss is chosen and the record says so.
 */

export const DEFAULT_MAX_LOSS_INCREASE = 0.005;

const SIMPLICITY: Record<PlanChoicePoint['strategy'], number> = { topk: 0, 'threshold-topk': 1, threshold: 2 };

export function choosePlan(
  points: readonly Omit<PlanChoicePoint, 'within_bound'>[],
  denseLoss: number,
  maxLossIncrease: number,
  tokens: number,
): PlanChoice {
  if (points.length === 0) throw new Error('choosePlan: no sweep points');
  if (!(maxLossIncrease >= 0)) throw new Error(`choosePlan: max loss increase must be ≥ 0, got ${maxLossIncrease}`);
  const bound = denseLoss * (1 + maxLossIncrease);
  const sweep: PlanChoicePoint[] = points.map((p) => ({ ...p, within_bound: p.loss <= bound }));
  const eligible = sweep.filter((p) => p.within_bound);
  const byCost = (a: PlanChoicePoint, b: PlanChoicePoint) =>
    a.active_params - b.active_params || a.loss - b.loss || SIMPLICITY[a.strategy] - SIMPLICITY[b.strategy];
  const chosen = eligible.length ? [...eligible].sort(byCost)[0] : [...sweep].sort((a, b) => a.loss - b.loss)[0];
  return {
    rule: eligible.length
      ? `fewest active parameters per token with calibration loss ≤ dense × (1 + ${maxLossIncrease})`
      : `no routing met dense × (1 + ${maxLossIncrease}); the lowest loss was chosen`,
    max_loss_increase: maxLossIncrease,
    tokens,
    dense_loss: denseLoss,
    loss_bound: bound,
    chosen,
    sweep,
  };
}
