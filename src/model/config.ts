/**
 * The model's shape: one typed description shared by the trainer, the reference forward, the converter and the
 * runtime. Field names are those of transformers' Qwen2-MoE `config.json`, so a checkpoint's config is this object
 * plus Hugging Face boilerplate (see `toHfConfig`).
 */
export interface ModelConfig {
  vocab_size: number;
  hidden_size: number; // d
  num_hidden_layers: number; // L
  num_attention_heads: number; // H
  num_key_value_heads: number; // KV (grouped-query attention: H % KV == 0)
  num_experts: number; // E
  moe_intermediate_size: number; // I, hidden width of one expert
  shared_expert_intermediate_size: number; // 0 = no shared expert
  num_experts_per_tok: number; // top-k written to config.json for exporters (DS-MoE trains densely)
  max_position_embeddings: number;
  rope_theta: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
  /**
   * Megrez2's cross-layer expert sharing: f consecutive MoE layers use one pool of routed experts (`expertPoolOf`).
   * Absent = 1 (every layer its own experts); written only when not 1, so older configs stay byte for byte the same.
   */
  experts_shared_frequency?: number;
  /**
   * Layers before this index are dense: one SwiGLU MLP of width `intermediate_size`, no router, no experts and no
   * shared expert (Megrez2's and DeepSeek's field; docs/design.md §1). Absent = 0: every layer is MoE.
   */
  first_k_dense_replace?: number;
  /**
   * Width of a dense layer's MLP (`denseIntermediateSize`). Absent = num_experts × moe_intermediate_size, the width
   * of the dense MLP equal in size to one MoE layer's experts (what config.json has always written here); written
   * only with dense layers and when it differs from that.
   */
  intermediate_size?: number;
  /** Megrez2's pre-gated routing: layer l's router reads layer l−1's post-attention-norm output (`preGated`). Absent = false. */
  pre_gate?: boolean;
  /**
   * Mixture of attention heads (MoA, docs/design.md §12): A attention experts in every layer, each owning
   * `heads_per_attention_expert` query heads (its slice of W_q and W_o); K/V stay shared. Absent or 0 = plain
   * attention; written only when > 0.
   */
  attention_experts?: number;
  /** N_h, query heads per attention expert: A · N_h = num_attention_heads. Present exactly when attention_experts > 0. */
  heads_per_attention_expert?: number;
}

export function headDim(config: ModelConfig): number {
  return config.hidden_size / config.num_attention_heads;
}

/**
 * What each field may hold; also the one list of ModelConfig's fields (the Record type makes a new field impossible
 * to forget here). Listed in the order `configProblems` reports them.
 */
const FIELD_RULES: Record<keyof ModelConfig, 'positive integer' | 'non-negative integer' | 'positive number' | 'boolean'> = {
  vocab_size: 'positive integer',
  hidden_size: 'positive integer',
  num_hidden_layers: 'positive integer',
  num_attention_heads: 'positive integer',
  num_key_value_heads: 'positive integer',
  num_experts: 'positive integer',
  moe_intermediate_size: 'positive integer',
  num_experts_per_tok: 'positive integer',
  max_position_embeddings: 'positive integer',
  shared_expert_intermediate_size: 'non-negative integer',
  rope_theta: 'positive number',
  rms_norm_eps: 'positive number',
  tie_word_embeddings: 'boolean',
  experts_shared_frequency: 'positive integer',
  first_k_dense_replace: 'non-negative integer',
  intermediate_size: 'positive integer',
  pre_gate: 'boolean',
  attention_experts: 'non-negative integer',
  heads_per_attention_expert: 'positive integer',
};

/** The fields a config may leave out, each meaning its default (Megrez2's sharing and pre-gating off, plain attention). */
const OPTIONAL_KEYS: readonly (keyof ModelConfig)[] = [
  'experts_shared_frequency',
  'first_k_dense_replace',
  'intermediate_size',
  'pre_gate',
  'attention_experts',
  'heads_per_attention_expert',
];

export const MODEL_CONFIG_KEYS = Object.keys(FIELD_RULES) as (keyof ModelConfig)[];
/** The fields every config (and every plan's config) must have. */
export const REQUIRED_MODEL_CONFIG_KEYS = MODEL_CONFIG_KEYS.filter((key) => !OPTIONAL_KEYS.includes(key));

/**
 * The config with the optional fields (Megrez2's, MoA's) dropped where they hold their defaults: the form written to
 * config.json and plan.json, so that a model without them is described exactly as before them.
 */
export function withoutDefaults(config: ModelConfig): ModelConfig {
  const out = { ...config };
  if (out.experts_shared_frequency === undefined || out.experts_shared_frequency === 1) delete out.experts_shared_frequency;
  if (out.first_k_dense_replace === undefined || out.first_k_dense_replace === 0) delete out.first_k_dense_replace;
  // intermediate_size only matters with dense layers, and only when it is not the default E·I.
  if (out.first_k_dense_replace === undefined || out.intermediate_size === out.num_experts * out.moe_intermediate_size) delete out.intermediate_size;
  if (out.pre_gate === undefined || out.pre_gate === false) delete out.pre_gate;
  if (out.attention_experts === undefined || out.attention_experts === 0) delete out.attention_experts;
  if (out.heads_per_attention_expert === undefined) delete out.heads_per_attention_expert;
  return out;
}

/**
 * Krajewski et al.'s fine-grained experts: granularity G splits each expert into G experts of width I/G and runs G
 * times as many per token, so total and active expert parameters are unchanged (the router grows to E·G outputs).
 * The result is an ordinary config, just more and narrower experts: checkpoints, plans and the runtime see no
 * granularity. The caller checks that G divides moe_intermediate_size.
 */
export function splitExperts(config: ModelConfig, granularity: number): ModelConfig {
  if (granularity === 1) return config;
  return {
    ...config,
    num_experts: config.num_experts * granularity,
    moe_intermediate_size: config.moe_intermediate_size / granularity,
    num_experts_per_tok: config.num_experts_per_tok * granularity,
  };
}

/**
 * Whether layer l is a dense MLP layer (Megrez2's and DeepSeek's `first_k_dense_replace`): no router, no experts;
 * its MLP is `down · (silu(gate·m) ⊙ up·m)` of width `denseIntermediateSize`.
 */
export function isDenseLayer(config: ModelConfig, l: number): boolean {
  return l < (config.first_k_dense_replace ?? 0);
}

/** W, the width of a dense layer's MLP: `intermediate_size`, by default E·I. */
export function denseIntermediateSize(config: ModelConfig): number {
  return config.intermediate_size ?? config.num_experts * config.moe_intermediate_size;
}

/** The MoE layers (every layer from first_k_dense_replace on), increasing. */
export function moeLayers(config: ModelConfig): number[] {
  const out: number[] = [];
  for (let l = 0; l < config.num_hidden_layers; l++) if (!isDenseLayer(config, l)) out.push(l);
  return out;
}

/**
 * The layer whose routed experts layer l uses: the pool's id is the index of its first layer. Megrez2's serving
 * code (vLLM/SGLang `megrez_moe`): `(l − first_k_dense_replace) // f · f + first_k_dense_replace` for
 * l ≥ first_k_dense_replace; a dense layer before it (no routed experts) is its own. f = 1: every layer is its own pool.
 */
export function expertPoolOf(config: ModelConfig, l: number): number {
  const f = config.experts_shared_frequency ?? 1;
  const k = config.first_k_dense_replace ?? 0;
  if (l < k) return l;
  return Math.floor((l - k) / f) * f + k;
}

/** The pool ids (first layer of each pool of routed experts; dense layers have none), increasing. */
export function expertPools(config: ModelConfig): number[] {
  return moeLayers(config).filter((l) => expertPoolOf(config, l) === l);
}

/**
 * Whether layer l's router reads the previous layer's post-attention-norm output instead of its own (Megrez2's
 * pre-gate), so its experts are known one block early. Megrez2 pre-gates every MoE layer (from
 * first_k_dense_replace on; the first reads the dense layer before it); layer 0 has no previous block, so it always
 * routes on its own input.
 */
export function preGated(config: ModelConfig, l: number): boolean {
  return config.pre_gate === true && l >= Math.max(1, config.first_k_dense_replace ?? 0);
}

/** A, the attention experts of every layer; 0 for plain attention (docs/design.md §12). */
export function attentionExperts(config: ModelConfig): number {
  return config.attention_experts ?? 0;
}

/** N_h, query heads per attention expert (0 for plain attention). */
export function headsPerAttentionExpert(config: ModelConfig): number {
  return attentionExperts(config) > 0 ? (config.heads_per_attention_expert as number) : 0;
}

/** Returns a list of problems with a config's internal consistency (empty when it is usable). */
export function configProblems(config: ModelConfig): string[] {
  const problems: string[] = [];
  for (const key of MODEL_CONFIG_KEYS) {
    const value = config[key];
    if (value === undefined && OPTIONAL_KEYS.includes(key)) continue;
    const rule = FIELD_RULES[key];
    const isInt = typeof value === 'number' && Number.isInteger(value);
    if (rule === 'positive integer' && !(isInt && value > 0)) problems.push(`${key} must be a positive integer, got ${JSON.stringify(value)}`);
    if (rule === 'non-negative integer' && !(isInt && value >= 0)) problems.push(`${key} must be a non-negative integer, got ${JSON.stringify(value)}`);
    if (rule === 'positive number' && !((value as number) > 0)) problems.push(`${key} must be > 0, got ${JSON.stringify(value)}`);
    if (rule === 'boolean' && typeof value !== 'boolean') problems.push(`${key} must be true or false`);
  }
  if (problems.length) return problems;
  if (config.hidden_size % config.num_attention_heads !== 0) {
    problems.push(`hidden_size (${config.hidden_size}) must be divisible by num_attention_heads (${config.num_attention_heads})`);
  } else if (headDim(config) % 2 !== 0) {
    problems.push(`head dimension hidden_size/num_attention_heads = ${headDim(config)} must be even for RoPE`);
  }
  if (config.num_attention_heads % config.num_key_value_heads !== 0) {
    problems.push(`num_attention_heads (${config.num_attention_heads}) must be a multiple of num_key_value_heads (${config.num_key_value_heads})`);
  }
  if (config.num_experts_per_tok > config.num_experts) {
    problems.push(`num_experts_per_tok (${config.num_experts_per_tok}) must be at most num_experts (${config.num_experts})`);
  }
  if ((config.first_k_dense_replace ?? 0) >= config.num_hidden_layers) {
    problems.push(
      `first_k_dense_replace (${config.first_k_dense_replace}) must be below num_hidden_layers (${config.num_hidden_layers}): at least one layer must be MoE`,
    );
  }
  problems.push(...attentionExpertProblems(config));
  return problems;
}

/** MoA's rules (docs/design.md §12): heads per expert given exactly when A > 0, and A · N_h = H. */
function attentionExpertProblems(config: ModelConfig): string[] {
  const A = attentionExperts(config);
  const Nh = config.heads_per_attention_expert;
  const H = config.num_attention_heads;
  if (A === 0) {
    return Nh === undefined ? [] : [`heads_per_attention_expert (${Nh}) is set but attention_experts is 0 (plain attention)`];
  }
  if (Nh === undefined) return [`heads_per_attention_expert is required when attention_experts is ${A}`];
  if (A * Nh !== H) {
    return [`attention_experts (${A}) × heads_per_attention_expert (${Nh}) must equal num_attention_heads (${H})`];
  }
  return [];
}

/** Parameter counts, for reports and for the recipe's `params` variable. */
export function parameterCounts(config: ModelConfig): {
  total: number;
  embedding: number;
  attentionPerLayer: number;
  expertPerExpert: number;
  sharedPerLayer: number;
  routerPerLayer: number;
  /** Parameters touched per token with k experts per layer (embedding row lookups excluded, LM head included). */
  activePerToken: (k: number) => number;
} {
  const d = config.hidden_size;
  const hd = headDim(config);
  const qkv = (config.num_attention_heads + 2 * config.num_key_value_heads) * hd;
  // MoA re-slices W_q and W_o among the attention experts; only their router [A, d] is new.
  const attentionPerLayer = qkv * d + qkv + config.num_attention_heads * hd * d + attentionExperts(config) * d;
  const expertPerExpert = 3 * d * config.moe_intermediate_size;
  const sharedPerLayer = config.shared_expert_intermediate_size > 0 ? 3 * d * config.shared_expert_intermediate_size + d : 0;
  const routerPerLayer = config.num_experts * d;
  const normsPerLayer = 2 * d;
  const embedding = config.vocab_size * d;
  const lmHead = config.tie_word_embeddings ? 0 : config.vocab_size * d;
  const perLayerFixed = attentionPerLayer + sharedPerLayer + routerPerLayer + normsPerLayer;
  // Dense layers (first_k_dense_replace): attention, norms and one MLP of width W, all of it active.
  const denseLayers = config.num_hidden_layers - moeLayers(config).length;
  const denseLayer = attentionPerLayer + normsPerLayer + 3 * d * denseIntermediateSize(config);
  const moe = config.num_hidden_layers - denseLayers;
  // Routed experts are stored once per pool (Megrez2's sharing); every MoE layer still runs k of them per token.
  const total =
    embedding +
    lmHead +
    d +
    denseLayers * denseLayer +
    moe * perLayerFixed +
    expertPools(config).length * config.num_experts * expertPerExpert;
  const activePerToken = (k: number) =>
    config.vocab_size * d + d + denseLayers * denseLayer + moe * (perLayerFixed + k * expertPerExpert);
  return { total, embedding, attentionPerLayer, expertPerExpert, sharedPerLayer, routerPerLayer, activePerToken };
}

/** The Hugging Face `config.json` for a model of this shape (transformers' Qwen2MoeForCausalLM). */
export function toHfConfig(config: ModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['Qwen2MoeForCausalLM'],
    model_type: 'qwen2_moe',
    ...withoutDefaults(config),
    head_dim: headDim(config),
    hidden_act: 'silu',
    intermediate_size: denseIntermediateSize(config),
    norm_topk_prob: false,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
    use_sliding_window: false,
    sliding_window: null,
    max_window_layers: config.num_hidden_layers,
    attention_dropout: 0,
    qkv_bias: true,
    initializer_range: 0.02,
    output_router_logits: false,
    router_aux_loss_coef: 0,
    use_cache: true,
    torch_dtype: 'float32',
    ...extra,
  };
}

/** Reads the ModelConfig fields out of a Hugging Face config object; callers validate with `configProblems`. */
export function fromHfConfig(hf: Record<string, unknown>): ModelConfig {
  const num = (key: string, fallback?: number): number => {
    const value = hf[key];
    return typeof value === 'number' ? value : (fallback as number);
  };
  return {
    vocab_size: num('vocab_size'),
    hidden_size: num('hidden_size'),
    num_hidden_layers: num('num_hidden_layers'),
    num_attention_heads: num('num_attention_heads'),
    num_key_value_heads: num('num_key_value_heads', num('num_attention_heads')),
    num_experts: num('num_experts'),
    moe_intermediate_size: num('moe_intermediate_size'),
    shared_expert_intermediate_size: num('shared_expert_intermediate_size', 0),
    num_experts_per_tok: num('num_experts_per_tok', 2),
    max_position_embeddings: num('max_position_embeddings'),
    rope_theta: num('rope_theta', 10000),
    rms_norm_eps: num('rms_norm_eps', 1e-6),
    tie_word_embeddings: hf.tie_word_embeddings === true,
    ...(hf.experts_shared_frequency !== undefined ? { experts_shared_frequency: hf.experts_shared_frequency as number } : {}),
    ...(hf.first_k_dense_replace !== undefined ? { first_k_dense_replace: hf.first_k_dense_replace as number } : {}),
    // Qwen2-MoE's config.json always has intermediate_size (E·I when dsmoe wrote it); read only where dense layers use
    // it and it is not that default, as withoutDefaults writes it.
    ...(typeof hf.intermediate_size === 'number' && (hf.first_k_dense_replace ?? 0) !== 0 && hf.intermediate_size !== num('num_experts') * num('moe_intermediate_size')
      ? { intermediate_size: hf.intermediate_size }
      : {}),
    ...(hf.pre_gate !== undefined ? { pre_gate: hf.pre_gate as boolean } : {}),
    ...(hf.attention_experts !== undefined ? { attention_experts: hf.attention_experts as number } : {}),
    ...(hf.heads_per_attention_expert !== undefined ? { heads_per_attention_expert: hf.heads_per_attention_expert as number } : {}),
  };
}
