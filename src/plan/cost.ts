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
 *   "dense" uses all E experts of the source model. MoA (docs/design.md §12): an attention expert counts its q rows,
 *   q bias and W_o columns, as many as are expected per token (K for `all`); k/v and the router A·d always count;
 *   "dense" runs all A attention experts. `costSplit` splits the active figures into attention, MLP and the rest.
 */
import type { ModelConfig } from '../model/config';
import { attentionExperts, expertPoolOf, headDim, headsPerAttentionExpert } from '../model/config';
import type { Plan, PlanClassDtypes, PlanCost, PlanDtype } from './plan_format';
import { classDtypes, layerOps } from './plan_format';
import { bytesPerWeight } from './dtype';

/** MoA plans (docs/design.md §12): attention experts kept per layer and expected per token. */
export interface AttentionCounts {
  kept: number[]; // [L] attention experts kept (stored)
  active: number[]; // [L] expected attention experts per token
}

/** Per-token figures of one layer's parts, split as `costSplit` reports them. */
interface LayerParts {
  attnMatrix: number; // q/k/v/o weights, at the attention class's dtype
  attnF32: number; // attention norm, qkv bias, attention router
  attnMacs: number;
  mlpMatrix: number; // shared expert, at the plan dtype
  expertMatrix: number; // routed experts, at the experts' class dtype
  mlpF32: number; // mlp norm, router, shared gate
  mlpMacs: number;
}

export function planCost(
  config: ModelConfig,
  dtype: PlanDtype,
  keptPerLayer: number[], // [L] experts kept per layer (a shared pool's count on each of its layers)
  activePerLayer: number[], // [L] expected experts per token per layer
  classes: PlanClassDtypes = { experts: dtype, attention: dtype },
  attention?: AttentionCounts,
): PlanCost {
  const d = config.hidden_size;
  const V = config.vocab_size;
  const E = config.num_experts;
  const A = attentionExperts(config);
  const b = bytesPerWeight(dtype);
  const lmHeadParams = V * d;
  const denseAttention = keptPerLayer.map(() => A);
  const parts = (experts: number, attentionExpertsRun: number) => layerParts(config, experts, attentionExpertsRun);

  const perToken = (experts: number[], attn: number[]) => {
    const split = emptySplit();
    split.other.params = d + lmHeadParams; // final norm + LM head
    split.other.macs = lmHeadParams;
    split.other.bytes = d * 4 + lmHeadParams * b + d * b; // final norm, LM head, one embedding row
    experts.forEach((a, l) => addLayer(split, parts(a, attn[l]), classes, b));
    return split;
  };
  const active = sumSplit(perToken(activePerLayer, attention?.active ?? denseAttention));
  const dense = sumSplit(perToken(keptPerLayer.map(() => E), denseAttention));
  let total = V * d + d + (config.tie_word_embeddings ? 0 : lmHeadParams);
  keptPerLayer.forEach((K, l) => {
    const p = parts(expertPoolOf(config, l) === l ? K : 0, attention?.kept[l] ?? A);
    total += p.attnMatrix + p.attnF32 + p.mlpMatrix + p.expertMatrix + p.mlpF32;
  });
  return {
    total_params: total,
    active_params_per_token: active.params,
    dense_active_params_per_token: dense.params,
    active_flops_per_token: 2 * active.macs,
    dense_flops_per_token: 2 * dense.macs,
    active_weight_bytes_per_token: active.bytes,
    dense_weight_bytes_per_token: dense.bytes,
    attention_flops_per_context_token: 4 * config.num_hidden_layers * config.num_attention_heads * headDim(config),
  };
}

/**
 * One layer's weights a token touches when `experts` routed experts and `attentionExpertsRun` attention experts
 * (MoA; ignored in plain attention, which runs all H heads) run. In a MoA layer the q rows, q bias and o columns
 * count per attention expert; k/v, their biases and the router (A·d) always count.
 */
function layerParts(config: ModelConfig, experts: number, attentionExpertsRun: number): LayerParts {
  const d = config.hidden_size;
  const E = config.num_experts;
  const Is = config.shared_expert_intermediate_size;
  const hd = headDim(config);
  const A = attentionExperts(config);
  const qHeads = A > 0 ? attentionExpertsRun * headsPerAttentionExpert(config) : config.num_attention_heads;
  const qkvRows = (qHeads + 2 * config.num_key_value_heads) * hd;
  const attnMatrix = qkvRows * d + qHeads * hd * d;
  const expertParams = 3 * config.moe_intermediate_size * d;
  return {
    attnMatrix,
    attnF32: d + qkvRows + A * d,
    attnMacs: attnMatrix + A * d,
    mlpMatrix: Is > 0 ? 3 * Is * d : 0,
    expertMatrix: experts * expertParams,
    mlpF32: d + E * d + (Is > 0 ? d : 0),
    mlpMacs: E * d + (Is > 0 ? 3 * Is * d + d : 0) + experts * expertParams,
  };
}

/** Active params, MACs and weight bytes per token of one part of the model. */
export interface PartCost {
  params: number;
  macs: number;
  bytes: number;
}
/** Per-token figures split into attention (norm, router, q/k/v/o, biases), MLP (norm, router, experts, shared) and the rest. */
export interface CostSplit {
  attention: PartCost;
  mlp: PartCost;
  other: PartCost; // final norm, LM head, one embedding row
}

const emptySplit = (): CostSplit => ({
  attention: { params: 0, macs: 0, bytes: 0 },
  mlp: { params: 0, macs: 0, bytes: 0 },
  other: { params: 0, macs: 0, bytes: 0 },
});

function addLayer(split: CostSplit, p: LayerParts, classes: PlanClassDtypes, b: number): void {
  split.attention.params += p.attnMatrix + p.attnF32;
  split.attention.macs += p.attnMacs;
  split.attention.bytes += p.attnMatrix * bytesPerWeight(classes.attention) + p.attnF32 * 4;
  split.mlp.params += p.mlpMatrix + p.expertMatrix + p.mlpF32;
  split.mlp.macs += p.mlpMacs;
  split.mlp.bytes += p.mlpMatrix * b + p.expertMatrix * bytesPerWeight(classes.experts) + p.mlpF32 * 4;
}

function sumSplit(split: CostSplit): PartCost {
  const parts = [split.attention, split.mlp, split.other];
  return {
    params: parts.reduce((n, x) => n + x.params, 0),
    macs: parts.reduce((n, x) => n + x.macs, 0),
    bytes: parts.reduce((n, x) => n + x.bytes, 0),
  };
}

/**
 * A plan's active per-token figures split into attention, MLP and the rest, from its ops: the expected experts of
 * each layer as the plan's cost assumed them (`calibration` means for threshold selects, else k; attention `all`: K).
 */
export function costSplit(plan: Plan): CostSplit {
  const c = plan.config;
  const split = emptySplit();
  const b = bytesPerWeight(plan.dtype);
  split.other.params = c.hidden_size + c.vocab_size * c.hidden_size;
  split.other.macs = c.vocab_size * c.hidden_size;
  split.other.bytes = c.hidden_size * 4 + c.vocab_size * c.hidden_size * b + c.hidden_size * b;
  plan.layers.forEach((layer, l) => {
    const ops = layerOps(layer);
    const meanMlp = plan.calibration?.layers[l]?.mean_selected;
    const experts = ops.select.mode === 'threshold' && meanMlp !== undefined ? meanMlp : ops.select.k;
    const sel = ops.attnSelect;
    const meanAttn = plan.calibration?.attention_layers?.[l]?.mean_selected;
    const attn = !sel ? 0 : sel.mode === 'threshold' && meanAttn !== undefined ? meanAttn : sel.k;
    addLayer(split, layerParts(c, experts, attn), classDtypes(plan), b);
  });
  return split;
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
