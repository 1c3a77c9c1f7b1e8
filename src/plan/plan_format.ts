/**
 * The sparse plan's format (docs/design.md §4): the typed form of `plan.json`. `readPlan` (read_plan.ts) validates a
 * plan folder completely before anything reaches native code; everything below it (runtime, report) trusts the
 * `Plan` it returns.
 */
import type { DenseModelType } from '../checkpoint/dense';
import type { SafetensorsHeader } from '../checkpoint/safetensors';
import type { ModelConfig } from '../model/config';

export const PLAN_FORMAT = 'dsmoe-plan';
export const PLAN_VERSION = 1;
/** Tokenizer and generation files a plan folder carries from its dense folder, as they are. */
export const PLAN_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'chat_template.jinja'];

/** Dtype of every 2-D (and 3-D expert) matrix; norms, biases, routers and the shared-expert gate stay F32. */
export type PlanDtype = 'f32' | 'bf16' | 'f16';
/** Storage of one class of matrices: a plan dtype, GGUF's Q8_0 / Q4_0 blocks or the affine Q3_A / Q2_A (src/plan/quantize.ts). */
export type MatrixDtype = PlanDtype | 'q8_0' | 'q4_0' | 'q3_a' | 'q2_a';

/**
 * Per-class storage (mixed precision, docs/design.md §4): the routed experts' gate_up/down and the attention
 * projections qkv/o. The embedding, LM head and shared expert stay at the plan's `dtype`; norms, biases, routers
 * and the shared gate at F32. Absent from plan.json when both equal `dtype`.
 */
export interface PlanClassDtypes {
  experts: MatrixDtype;
  attention: MatrixDtype;
}
export type StrategyName = 'topk' | 'threshold' | 'threshold-topk';

export interface PlanSource {
  dir: string | null; // the dense folder converted; null for random-init plans
  model_sha256: string | null; // sha256 of the dense model.safetensors; null for random-init plans
  model_type: DenseModelType; // the source architecture (olmoe and mixtral: imported, src/interop)
  routing_rule: string; // 'softmax-unnormalized' (DS-MoE) or 'softmax-renormalized'
  random_init?: { seed: number; std: number }; // present on random-init plans
}

export interface PlanStrategy {
  name: StrategyName;
  k: number | null; // the fixed k of `topk`; null when k is chosen per layer (threshold-topk) or varies (threshold)
  epsilon: number; // threshold on E·p_e used by `threshold` and by calibration
  calib_tokens: number; // 0 when no calibration ran (random-init plans)
  /** MoA plans only (docs/design.md §12): how the attention experts are selected. */
  attention?: AttentionStrategy;
}

/** `all`: every kept attention expert (the paper's top-K mode); the others as for MLP experts over A·pa_a. */
export type AttentionStrategyName = 'all' | StrategyName;
export interface AttentionStrategy {
  name: AttentionStrategyName;
  k: number | null; // topk's k; null for the others
  epsilon: number;
}

// ---------------------------------------------------------------------------------------------------------------
// ops, in the order they appear in every layer

export interface RmsNormOp {
  op: 'rms_norm';
  weight: string; // [d] F32
}
export interface AttentionOp {
  op: 'attention';
  qkv: string; // [(H+2·KV)·hd, d]   q rows, then k, then v; MoA: [(K·N_h+2·KV)·hd, d], q rows of the kept experts
  qkv_bias: string; // [(H+2·KV)·hd] F32 (MoA: as qkv)
  o: string; // [d, H·hd]; MoA: [K, d, N_h·hd], per kept expert its W_o columns
  // OLMoE imports only: RMSNorm of the whole q [H·hd] and k [KV·hd] projections (F32 weights), before RoPE
  q_norm?: string;
  k_norm?: string;
  /** MoA layers only (docs/design.md §12): original attention expert ids, strictly increasing; packed head j is original head kept[j / N_h]·N_h + j % N_h. */
  kept?: number[];
  heads_per_expert?: number; // N_h, MoA layers only
}
/** MoA layers: the attention router, softmax over all A experts of attn_norm's output. */
export interface AttentionRouterOp {
  op: 'attention_router';
  weight: string; // [A, d] F32
  num_experts: number; // A
}
/** MoA layers: which attention experts a token runs; `all` = every kept expert (k = k_max = K). */
export interface AttentionSelectOp {
  op: 'attention_select';
  mode: 'all' | 'topk' | 'threshold';
  k: number;
  epsilon: number; // threshold: keep a iff A·pa_a > epsilon (the arg-max always kept)
  k_max: number;
  renormalize: boolean; // always false (DS-MoE); kept for symmetry with `select`
}
export interface ResidualOp {
  op: 'residual';
}
export interface RouterOp {
  op: 'router';
  weight: string; // [E, d] F32, all experts: probabilities are over all of them
  num_experts: number; // E
  /**
   * Megrez2's pre-gate (present only when true): this layer's router reads the previous layer's mlp_norm output, so
   * the runtime computes its routing one block early. Absent: it reads this layer's own mlp_norm output.
   */
  pre_gate?: true;
  /**
   * A dense MLP layer (Megrez2's first_k_dense_replace; present only when true): the weight is zero, so every
   * expert gets 1/E, and the select op (top-1 over kept [0], renormalised) gives the layer's one expert, its MLP,
   * weight exactly 1 (docs/design.md §4).
   */
  dense?: true;
}
export interface SelectOp {
  op: 'select';
  mode: 'topk' | 'threshold';
  k: number; // topk: experts per token; threshold: the calibrated count (ceil of the mean), for sizing only
  epsilon: number; // threshold: keep e iff E·p_e > epsilon (the arg-max is always kept)
  k_max: number; // upper bound on experts per token (k ≤ k_max ≤ kept.length)
  renormalize: boolean; // divide the selected probabilities by their sum (Mixtral-style); DS-MoE: false
}
export interface ExpertsOp {
  op: 'experts';
  kept: number[]; // original expert ids, strictly increasing; row block i of gate_up/down is expert kept[i]; a dense layer: [0]
  gate_up: string; // [K, 2·I, d]   rows 0..I−1 gate, I..2I−1 up
  down: string; // [K, d, I]
  intermediate_size: number; // I; a dense layer: W, its MLP's width
  /**
   * The expert pool this layer uses (Megrez2's cross-layer sharing; present when the config shares): the index of
   * the pool's first layer, whose experts op stores `kept`, `gate_up` and `down` — every layer of a pool names the
   * same tensors and the same kept list, and the weights file holds them once.
   */
  pool?: number;
}
export interface SharedExpertOp {
  op: 'shared_expert';
  gate_up: string; // [2·Is, d]
  down: string; // [d, Is]
  gate: string; // [d] F32, y += sigmoid(m·gate) · shared(m)
  intermediate_size: number; // Is
}
export interface CombineOp {
  op: 'combine';
}
export type PlanOp = RmsNormOp | AttentionRouterOp | AttentionSelectOp | AttentionOp | ResidualOp | RouterOp | SelectOp | ExpertsOp | SharedExpertOp | CombineOp;

export interface PlanLayer {
  index: number;
  ops: PlanOp[];
}

export interface PlanLayerCalibration {
  k: number; // experts per token chosen for this layer
  mass_covered: number; // mean over calibration tokens of Σ_{selected} p_e
  expert_load: number[]; // [E] share of calibration tokens selecting each expert
  never_selected: number[]; // expert ids no calibration token selected
  mean_selected?: number; // mean selected count under the threshold rule
}
export interface PlanCalibration {
  tokens: number;
  layers: PlanLayerCalibration[];
  /** MoA plans with calibration: one entry per layer over the A attention experts. */
  attention_layers?: PlanLayerCalibration[];
}

/** Per-token costs; see src/plan/cost.ts for exactly what each counts. */
export interface PlanCost {
  total_params: number;
  active_params_per_token: number;
  dense_active_params_per_token: number;
  active_flops_per_token: number;
  dense_flops_per_token: number;
  active_weight_bytes_per_token: number;
  dense_weight_bytes_per_token: number;
  attention_flops_per_context_token?: number;
}

export interface Plan {
  format: typeof PLAN_FORMAT;
  version: typeof PLAN_VERSION;
  source: PlanSource;
  config: ModelConfig;
  dtype: PlanDtype;
  dtypes?: PlanClassDtypes; // absent: every class at `dtype`
  weights: string; // file name inside the plan folder
  strategy: PlanStrategy;
  embedding: string; // [V, d]
  layers: PlanLayer[];
  final: { norm: string /* [d] F32 */; lm_head: string /* [V, d]; equals `embedding` when tied */ };
  calibration: PlanCalibration | null;
  cost: PlanCost;
  /** Written when `dsmoe convert` chose the routing itself: the sweep it chose from and the rule. */
  choice?: PlanChoice;
}

/** One routing the converter scored on its calibration tokens (runtime, the plan's dtype). */
export interface PlanChoicePoint {
  strategy: StrategyName;
  k: number | null; // topk: k for every layer
  epsilon: number | null; // threshold and threshold-topk: ε on E·p_e
  layer_k: number[] | null; // threshold-topk: [L] k per layer, from the threshold rule's mean count at ε
  mean_active_experts: number; // experts per token per layer, measured
  active_params: number; // per token at that mean
  loss: number; // mean next-token cross-entropy on the calibration tokens, nats
  within_bound: boolean;
}

export interface PlanChoice {
  rule: string;
  max_loss_increase: number; // relative: the bound is dense_loss × (1 + max_loss_increase)
  max_perplexity_increase?: number; // when the bound was asked in perplexity: dense_loss + ln(1 + this)
  tokens: number; // predicted calibration tokens each point was scored on
  dense_loss: number;
  loss_bound: number;
  chosen: PlanChoicePoint;
  sweep: PlanChoicePoint[];
}

/** The storage of each class of matrices: `plan.dtypes`, or `plan.dtype` for both when absent. */
export function classDtypes(plan: Pick<Plan, 'dtype' | 'dtypes'>): PlanClassDtypes {
  return plan.dtypes ?? { experts: plan.dtype, attention: plan.dtype };
}

/** The ops of one layer by role (the order is fixed, so this is a destructuring of `layer.ops`). */
export interface LayerOps {
  attnNorm: RmsNormOp;
  attnRouter: AttentionRouterOp | null; // MoA layers only
  attnSelect: AttentionSelectOp | null; // MoA layers only
  attention: AttentionOp;
  mlpNorm: RmsNormOp;
  router: RouterOp;
  select: SelectOp;
  experts: ExpertsOp;
  shared: SharedExpertOp | null;
}

export function layerOps(layer: PlanLayer): LayerOps {
  const ops = layer.ops;
  const m = moaOffset(layer);
  const shared = ops[7 + m].op === 'shared_expert' ? (ops[7 + m] as SharedExpertOp) : null;
  return {
    attnNorm: ops[0] as RmsNormOp,
    attnRouter: m ? (ops[1] as AttentionRouterOp) : null,
    attnSelect: m ? (ops[2] as AttentionSelectOp) : null,
    attention: ops[1 + m] as AttentionOp,
    mlpNorm: ops[3 + m] as RmsNormOp,
    router: ops[4 + m] as RouterOp,
    select: ops[5 + m] as SelectOp,
    experts: ops[6 + m] as ExpertsOp,
    shared,
  };
}

/** 2 in a MoA layer (attention_router and attention_select precede attention), else 0: the shift of every later op's index. */
export function moaOffset(layer: { ops: readonly { op: string }[] }): number {
  return layer.ops[1]?.op === 'attention_router' ? 2 : 0;
}

/** The op sequence of every layer; `shared_expert` sits between `experts` and `combine` when present. */
export function expectedOpOrder(hasShared: boolean, moa = false): PlanOp['op'][] {
  return [
    'rms_norm',
    ...(moa ? (['attention_router', 'attention_select'] as const) : []),
    'attention',
    'residual',
    'rms_norm',
    'router',
    'select',
    'experts',
    ...(hasShared ? (['shared_expert'] as const) : []),
    'combine',
    'residual',
  ];
}

/** A validated plan with its weights file and that file's header. */
export interface LoadedPlan {
  plan: Plan;
  weightsPath: string;
  header: SafetensorsHeader;
}
