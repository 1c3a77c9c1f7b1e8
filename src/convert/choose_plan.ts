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

/**
 * The bound on the calibration loss: a share of the dense loss (`--max-loss-increase`; a bare number means this), or
 * a share of the dense perplexity (`--max-perplexity-increase`: loss ≤ dense + ln(1 + share)), for a user whose
 * target is stated in perplexity, as the demo's is.
 */
export type LossBound = number | { perplexity: number };

export function choosePlan(points: readonly Omit<PlanChoicePoint, 'within_bound'>[], denseLoss: number, bound: LossBound, tokens: number): PlanChoice {
  if (points.length === 0) throw new Error('choosePlan: no sweep points');
  const inPerplexity = typeof bound !== 'number';
  const share = inPerplexity ? bound.perplexity : bound;
  if (!(share >= 0)) throw new Error(`choosePlan: max ${inPerplexity ? 'perplexity' : 'loss'} increase must be ≥ 0, got ${share}`);
  const lossBound = inPerplexity ? denseLoss + Math.log1p(share) : denseLoss * (1 + share);
  const sweep: PlanChoicePoint[] = points.map((p) => ({ ...p, within_bound: p.loss <= lossBound }));
  const eligible = sweep.filter((p) => p.within_bound);
  const byCost = (a: PlanChoicePoint, b: PlanChoicePoint) =>
    a.active_params - b.active_params || a.loss - b.loss || SIMPLICITY[a.strategy] - SIMPLICITY[b.strategy];
  const chosen = eligible.length ? [...eligible].sort(byCost)[0] : [...sweep].sort((a, b) => a.loss - b.loss)[0];
  const boundText = inPerplexity ? `dense + ln(1 + ${share}) (perplexity × ${1 + share})` : `dense × (1 + ${share})`;
  return {
    rule: eligible.length
      ? `fewest active parameters per token with calibration loss ≤ ${boundText}`
      : `no routing met ${boundText}; the lowest loss was chosen`,
    // the bound as a share of the dense loss either way; the perplexity share as given, when that was the bound
    max_loss_increase: inPerplexity ? (denseLoss > 0 ? Math.log1p(share) / denseLoss : 0) : share,
    ...(inPerplexity ? { max_perplexity_increase: share } : {}),
    tokens,
    dense_loss: denseLoss,
    loss_bound: lossBound,
    chosen,
    sweep,
  };
}
