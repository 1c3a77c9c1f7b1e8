/**
 * Per-token cost of a plan, the figures the report's "ideal speedup" is built from.
 *
 * - params: `total_params` counts what the plan stores (pruned experts excluded; a pool of routed experts shared by
 *   several layers, Megrez2-style, once). Per-token params count every
 *   weight a token's forward touches, the LM head included and the embedding row lookup excluded (so
 *   `dense_active_params_per_token` equals `parameterCounts(config).activePerToken(E)`).
 * - FLOPs: 2 per multiply-add of every matrix-vector product (q/k/v/o, router, experts, shared expert and its
 *   gate, LM head). Norms, bias adds, activations and softmaxes are left out, and so is attention over the
 *   context, which grows with position: add `attention_flops_per_context_token` × (context length).
 * - weight bytes: the bytes of weights a batch-1 decode step reads: routed experts and attention projections at
 *   their class's dtype (plan.json `dtypes`; Q8_0 34 bytes and Q4_0 18 bytes per 32 weights, Q3_A 28 and Q2_A 20
 *   per 64), the other matrices at
 *   the plan dtype, norms, biases, routers and the shared gate at F32, plus one embedding row. This is what bounds
 *   decode speed by bandwidth.
 * - "active" uses the expected experts per token of each layer (k for top-k, the calibrated mean for threshold);
 *   "dense" uses all E experts of the source model.
 */
import type { ModelConfig } from '../model/config';
import { expertPoolOf, headDim } from '../model/config';
import type { PlanClassDtypes, PlanCost, PlanDtype } from './plan_format';
import { bytesPerWeight } from './dtype';

export function planCost(
  config: ModelConfig,
  dtype: PlanDtype,
  keptPerLayer: number[], // [L] experts kept per layer (a shared pool's count on each of its layers)
  activePerLayer: number[], // [L] expected experts per token per layer
  classes: PlanClassDtypes = { experts: dtype, attention: dtype },
): PlanCost {
  const d = config.hidden_size;
  const V = config.vocab_size;
  const E = config.num_experts;
  const I = config.moe_intermediate_size;
  const Is = config.shared_expert_intermediate_size;
  const hd = headDim(config);
  const qkvRows = (config.num_attention_heads + 2 * config.num_key_value_heads) * hd;
  const b = bytesPerWeight(dtype);
  const bExpert = bytesPerWeight(classes.experts);
  const bAttention = bytesPerWeight(classes.attention);

  const attentionParams = qkvRows * d + config.num_attention_heads * hd * d; // at the attention class's dtype
  const sharedParams = Is > 0 ? 3 * Is * d : 0; // at dtype
  const layerMatrixParams = attentionParams + sharedParams;
  const layerMatrixBytes = attentionParams * bAttention + sharedParams * b;
  const layerF32Params = 2 * d + qkvRows + E * d + (Is > 0 ? d : 0); // norms, qkv bias, router, shared gate
  const layerMacs = qkvRows * d + config.num_attention_heads * hd * d + E * d + (Is > 0 ? 3 * Is * d + d : 0);
  const expertParams = 3 * I * d;
  const lmHeadParams = V * d;

  const perToken = (experts: number[]) => {
    let params = d + lmHeadParams; // final norm + LM head
    let macs = lmHeadParams;
    let bytes = d * 4 + lmHeadParams * b + d * b; // final norm, LM head, one embedding row
    for (const a of experts) {
      params += layerMatrixParams + layerF32Params + a * expertParams;
      macs += layerMacs + a * expertParams;
      bytes += layerMatrixBytes + a * expertParams * bExpert + layerF32Params * 4;
    }
    return { params, flops: 2 * macs, bytes };
  };
  const active = perToken(activePerLayer);
  const dense = perToken(keptPerLayer.map(() => E));
  let total = V * d + d + (config.tie_word_embeddings ? 0 : lmHeadParams);
  keptPerLayer.forEach((K, l) => {
    total += layerMatrixParams + layerF32Params + (expertPoolOf(config, l) === l ? K * expertParams : 0);
  });
  return {
    total_params: total,
    active_params_per_token: active.params,
    dense_active_params_per_token: dense.params,
    active_flops_per_token: active.flops,
    dense_flops_per_token: dense.flops,
    active_weight_bytes_per_token: active.bytes,
    dense_weight_bytes_per_token: dense.bytes,
    attention_flops_per_context_token: 4 * config.num_hidden_layers * config.num_attention_heads * hd,
  };
}

/** What the per-token figures below read from a plan: its config, depth and cost (a Plan, or the report's view). */
export interface CostView {
  config: ModelConfig;
  layers: readonly unknown[];
  cost: PlanCost;
}

/** Parameters of one expert (gate, up, down). */
export function expertParams(plan: CostView): number {
  return 3 * plan.config.hidden_size * plan.config.moe_intermediate_size;
}

/**
 * Active parameters per token when `meanExperts` experts per layer run on average: the dense count (all E experts)
 * less the experts that do not run. Linear in the expert count, so a mean over tokens gives the mean count.
 */
export function activeParamsWithExperts(plan: CostView, meanExperts: number): number {
  const E = plan.config.num_experts;
  const notRun = plan.layers.length * (E - Math.min(E, meanExperts));
  return plan.cost.dense_active_params_per_token - notRun * expertParams(plan);
}
