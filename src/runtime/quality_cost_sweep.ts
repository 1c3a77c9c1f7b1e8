import type { EvaluationContext, RoutingOverride } from './evaluation_context';
import { Quality, QualityInput, measureQuality } from './quality';
import { costSplitWithExperts, splitTotal, type CostView } from '../plan/cost';

/**
 * The paper's Figure 4: held-out loss against active parameters per token, for fixed top-k (k = 1 … E) and for the
 * threshold rule over a sweep of ε. Each point is scored with the runtime's routing override on the same windows.
 * The report draws it on held-out tokens; the converter picks its plan from it on calibration tokens.
 */

export interface QualityCostPoint {
  sweep: 'topk' | 'threshold';
  k: number | null;
  epsilon: number | null;
  mean_active_experts: number; // MLP experts per token per layer
  active_params: number;
  /** active_params split (src/plan/cost.ts): attention (MoA: the plan's attention experts, which the sweep leaves as they are) and MLP. */
  active_attention_params: number;
  active_mlp_params: number;
  loss: number;
  perplexity: number;
  bits_per_byte: number;
  /** [L] experts per token in each layer (threshold: how the dynamic count spreads over depth). */
  layer_mean_experts: number[];
}

/** ε values swept by default: around the paper's 0.48, from nearly dense to nearly top-1. */
export const DEFAULT_EPSILONS = [0.05, 0.1, 0.2, 0.3, 0.48, 0.7, 1.0, 1.5, 2.0, 3.0];

/** Top-k for k = 1 … maxKept (the most experts a layer keeps), then the threshold rule at each ε. */
export function sweepRoutings(maxKept: number, epsilons: readonly number[]): RoutingOverride[] {
  const routings: RoutingOverride[] = [];
  for (let k = 1; k <= maxKept; k++) routings.push({ mode: 'topk', k });
  for (const epsilon of epsilons) routings.push({ mode: 'threshold', epsilon });
  return routings;
}

export function toQualityCostPoint(plan: CostView, routing: RoutingOverride, quality: Quality): QualityCostPoint {
  // Top-k runs exactly k experts (capped by the kept count); the counters confirm it, and the threshold rule
  // needs them: its mean expert count is only known after running.
  const meanExperts = Number.isFinite(quality.mean_active_experts) ? quality.mean_active_experts : (routing.k ?? NaN);
  const split = costSplitWithExperts(plan, meanExperts);
  return {
    sweep: routing.mode === 'threshold' ? 'threshold' : 'topk',
    k: routing.mode === 'topk' ? (routing.k ?? null) : null,
    epsilon: routing.mode === 'threshold' ? (routing.epsilon ?? null) : null,
    mean_active_experts: meanExperts,
    active_params: splitTotal(split).params,
    active_attention_params: split.attention.params,
    active_mlp_params: split.mlp.params,
    loss: quality.loss,
    perplexity: quality.perplexity,
    bits_per_byte: quality.bits_per_byte,
    layer_mean_experts: quality.layer_mean_experts,
  };
}

export async function sweepQualityCost(
  context: EvaluationContext,
  plan: CostView,
  input: QualityInput,
  routings: readonly RoutingOverride[],
  onPoint: (label: string) => void = () => undefined,
): Promise<QualityCostPoint[]> {
  const points: QualityCostPoint[] = [];
  for (const routing of routings) {
    const quality = await measureQuality(context, input, routing);
    points.push(toQualityCostPoint(plan, routing, quality));
    onPoint(routing.mode === 'topk' ? `top-${routing.k}` : `ε=${routing.epsilon}`);
  }
  return points;
}
