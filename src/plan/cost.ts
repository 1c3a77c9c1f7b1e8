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
 * - dense MLP layers (first_k_dense_replace): their MLP (3·W·d) counts as stored, active and dense alike; the plan's
 *   zero router of such a layer (docs/design.md §4) is no parameter and is not counted (E·d F32 zeros, read per token).
 */
import type { ModelConfig } from '../model/config';
import { attentionExperts, denseIntermediateSize, expertPoolOf, headDim, headsPerAttentionExpert, isDenseLayer } from '../model/config';
import type { MatrixDtype, PlanClassDtypes, PlanCost, PlanDtype } from './plan_format';
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
  const parts = (l: number, experts: number, attentionExpertsRun: number) => layerParts(config, l, experts, attentionExpertsRun);

  const perToken = (experts: number[], attn: number[]) => {
    const split = emptySplit();
    split.other.params = d + lmHeadParams; // final norm + LM head
    split.other.macs = lmHeadParams;
    split.other.bytes = d * 4 + lmHeadParams * b + d * b; // final norm, LM head, one embedding row
    experts.forEach((a, l) => addLayer(split, parts(l, a, attn[l]), classes, b));
    return split;
  };
  const active = splitTotal(perToken(activePerLayer, attention?.active ?? denseAttention));
  const dense = splitTotal(perToken(keptPerLayer.map(() => E), denseAttention));
  let total = V * d + d + (config.tie_word_embeddings ? 0 : lmHeadParams);
  keptPerLayer.forEach((K, l) => {
    const p = parts(l, expertPoolOf(config, l) === l ? K : 0, attention?.kept[l] ?? A);
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
 * Layer l's weights a token touches when `experts` routed experts and `attentionExpertsRun` attention experts
 * (MoA; ignored in plain attention, which runs all H heads) run. In a MoA layer the q rows, q bias and o columns
 * count per attention expert; k/v, their biases and the router (A·d) always count. A dense layer's MLP counts in
 * full whatever `experts` says: it has no router and always runs.
 */
function layerParts(config: ModelConfig, l: number, experts: number, attentionExpertsRun: number): LayerParts {
  const d = config.hidden_size;
  const E = config.num_experts;
  const Is = config.shared_expert_intermediate_size;
  const hd = headDim(config);
  const A = attentionExperts(config);
  const qHeads = A > 0 ? attentionExpertsRun * headsPerAttentionExpert(config) : config.num_attention_heads;
  const qkvRows = (qHeads + 2 * config.num_key_value_heads) * hd;
  const attnMatrix = qkvRows * d + qHeads * hd * d;
  const expertParams = 3 * config.moe_intermediate_size * d;
  if (isDenseLayer(config, l)) {
    const mlp = 3 * denseIntermediateSize(config) * d;
    return { attnMatrix, attnF32: d + qkvRows + A * d, attnMacs: attnMatrix + A * d, mlpMatrix: 0, expertMatrix: mlp, mlpF32: d, mlpMacs: mlp };
  }
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

/** The three parts summed: the figures `plan.cost` states for the same expert counts. */
export function splitTotal(split: CostSplit): PartCost {
  const parts = [split.attention, split.mlp, split.other];
  return {
    params: parts.reduce((n, x) => n + x.params, 0),
    macs: parts.reduce((n, x) => n + x.macs, 0),
    bytes: parts.reduce((n, x) => n + x.bytes, 0),
  };
}

/**
 * What the per-token split reads from a plan: its config, dtypes, each layer's `select` / `attention_select` ops and
 * calibrated means, and its cost (a `Plan`, or the report's structural view of one, src/report/plan_view.ts).
 */
export interface CostView {
  config: ModelConfig;
  dtype: string;
  dtypes?: { experts: string; attention: string };
  layers: readonly { ops: readonly { op: string; k?: number; mode?: string }[] }[];
  calibration?: null | { layers: readonly { mean_selected?: number }[]; attention_layers?: readonly { mean_selected?: number }[] };
  cost: PlanCost;
}

/**
 * A plan's active per-token figures split into attention, MLP and the rest, from its ops: the expected experts of
 * each layer as the plan's cost assumed them (`calibration` means for threshold selects, else k; attention `all`: K).
 * The three parts sum to `plan.cost`'s active figures.
 */
export function costSplit(plan: CostView): CostSplit {
  return splitWith(plan, (l) => ({ experts: plannedExperts(plan, l), attention: plannedAttentionExperts(plan, l) }));
}

/** The split of the dense model the plan's `dense_*` figures count: all E experts and all A attention experts. */
export function denseCostSplit(plan: CostView): CostSplit {
  const A = attentionExperts(plan.config);
  return splitWith(plan, () => ({ experts: plan.config.num_experts, attention: A }));
}

/**
 * The split when `meanExperts` MLP experts per layer run on average (at most E) and the attention experts run as
 * the plan selects them: the quality–cost sweep's points, whose routing override changes only the MLP's selection.
 */
export function costSplitWithExperts(plan: CostView, meanExperts: number): CostSplit {
  const experts = Math.min(plan.config.num_experts, meanExperts);
  return splitWith(plan, (l) => ({ experts, attention: plannedAttentionExperts(plan, l) }));
}

function splitWith(plan: CostView, counts: (l: number) => { experts: number; attention: number }): CostSplit {
  const c = plan.config;
  const split = emptySplit();
  const b = bytesPerWeight(plan.dtype as MatrixDtype);
  const classes = { experts: (plan.dtypes?.experts ?? plan.dtype) as MatrixDtype, attention: (plan.dtypes?.attention ?? plan.dtype) as MatrixDtype };
  split.other.params = c.hidden_size + c.vocab_size * c.hidden_size;
  split.other.macs = c.vocab_size * c.hidden_size;
  split.other.bytes = c.hidden_size * 4 + c.vocab_size * c.hidden_size * b + c.hidden_size * b;
  plan.layers.forEach((_, l) => {
    const { experts, attention } = counts(l);
    addLayer(split, layerParts(c, l, experts, attention), classes, b);
  });
  return split;
}

/** MoA plans: attention experts per token of every layer as the plan's cost assumes them; undefined for plain attention. */
export function attentionExpertsPerToken(plan: CostView): number[] | undefined {
  if (attentionExperts(plan.config) === 0) return undefined;
  return plan.layers.map((_, l) => plannedAttentionExperts(plan, l));
}

/** MLP experts per token in layer l as the plan's cost assumes: the calibrated mean of a threshold select, else k. */
function plannedExperts(plan: CostView, l: number): number {
  const select = plan.layers[l].ops.find((op) => op.op === 'select');
  const mean = plan.calibration?.layers[l]?.mean_selected;
  return select?.mode === 'threshold' && mean !== undefined ? mean : (select?.k ?? plan.config.num_experts);
}

/** Attention experts per token in layer l (MoA): the calibrated mean of a threshold select, else k (`all`: K); 0 without MoA. */
function plannedAttentionExperts(plan: CostView, l: number): number {
  const select = plan.layers[l].ops.find((op) => op.op === 'attention_select');
  if (!select) return 0;
  const mean = plan.calibration?.attention_layers?.[l]?.mean_selected;
  return select.mode === 'threshold' && mean !== undefined ? mean : (select.k as number);
}

/** Parameters of one expert (gate, up, down). */
export function expertParams(plan: CostView): number {
  return 3 * plan.config.hidden_size * plan.config.moe_intermediate_size;
}

/**
 * Active parameters per token when `meanExperts` MLP experts per layer run on average and the attention experts as
 * the plan selects them. Linear in the expert count, so a mean over tokens gives the mean count.
 */
export function activeParamsWithExperts(plan: CostView, meanExperts: number): number {
  return splitTotal(costSplitWithExperts(plan, meanExperts)).params;
}
