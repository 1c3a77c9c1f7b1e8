import { PlanView, dtypeBytes, expertDtype, keptExperts } from './plan_view';

/**
 * What the plan's cost implies for speed. Decode at small batch is bound by reading weights, so the ideal speedup is
 * the ratio of weight bytes touched per token (dense ÷ sparse) at batch 1. For the roofline, a step at batch b reads
 * the non-expert weights once plus every expert that at least one of its tokens routes to; with per-token selection
 * probabilities q_e (expert load), the expected number of distinct experts is Σ_e 1 − (1 − q_e)^n for n tokens.
 */

export function idealSpeedup(plan: PlanView): number {
  return plan.cost.dense_weight_bytes_per_token / plan.cost.active_weight_bytes_per_token;
}

/** Bytes of one expert's three matrices (gate, up, down: 3·d·I) at the experts' storage (quantized: blocks included). */
export function expertBytes(plan: PlanView): number {
  return 3 * plan.config.hidden_size * plan.config.moe_intermediate_size * dtypeBytes(expertDtype(plan));
}

/**
 * Weight bytes read per step that do not depend on routing: attention, norms, routers, shared expert, LM head.
 * The plan's dense figure counts all E experts of the source model in every layer (src/plan/cost.ts).
 */
export function fixedWeightBytes(plan: PlanView): number {
  const denseExperts = plan.layers.length * plan.config.num_experts;
  return plan.cost.dense_weight_bytes_per_token - denseExperts * expertBytes(plan);
}

/** Expected distinct experts touched by `tokens` independent tokens, given per-token selection probabilities. */
export function expectedDistinctExperts(selectionProbability: readonly number[], tokens: number): number {
  let distinct = 0;
  for (const q of selectionProbability) distinct += 1 - Math.pow(1 - Math.min(1, Math.max(0, q)), tokens);
  return distinct;
}

/**
 * Expected weight bytes one evaluate call reads for `tokens` tokens. `selection[l][e]` is the probability that a
 * token selects kept expert e of layer l (1 for every expert in dense mode).
 */
export function weightBytesPerCall(plan: PlanView, selection: readonly (readonly number[])[], tokens: number): number {
  let experts = 0;
  for (const layer of selection) experts += expectedDistinctExperts(layer, tokens);
  return fixedWeightBytes(plan) + experts * expertBytes(plan);
}

/** Per-token selection probabilities from expert counts (counts[l][e] over `tokenCount` tokens). */
export function selectionFromCounts(counts: readonly (ArrayLike<number>)[], tokenCount: number): number[][] {
  return counts.map((layer) => Array.from(layer, (c) => (tokenCount > 0 ? c / tokenCount : 0)));
}

/** Selection probabilities when every kept expert runs for every token. */
export function denseSelection(plan: PlanView): number[][] {
  return keptExperts(plan).map((kept) => kept.map(() => 1));
}

/** Selection probabilities of a balanced top-k router: each kept expert is chosen with probability k / K. */
export function uniformSelection(plan: PlanView, k: readonly number[]): number[][] {
  return keptExperts(plan).map((kept, l) => kept.map(() => Math.min(1, k[l] / kept.length)));
}

/** Bits per byte of a text scored at `lossNats` mean cross-entropy over `tokens` predicted tokens spanning `bytes`. */
export function bitsPerByte(lossNats: number, tokens: number, bytes: number): number {
  return (lossNats * tokens) / (bytes * Math.LN2);
}
