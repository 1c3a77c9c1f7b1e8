/**
 * Every recipe field: its kind, its allowed range and its default. Numeric fields may be given as numbers or as
 * mathjs expressions (strings); defaults are written the same way. A field without a default is required.
 */

/** A range check for a numeric field, with the phrase used in error messages. */
export interface NumberCheck {
  integer: boolean;
  expected: string; // "a positive integer", used as "expected <expected>, got <value>"
  test: (value: number) => boolean;
}

const positiveInt: NumberCheck = { integer: true, expected: 'a positive integer', test: (x) => x > 0 };
const nonNegativeInt: NumberCheck = { integer: true, expected: 'a non-negative integer', test: (x) => x >= 0 };
const positive: NumberCheck = { integer: false, expected: 'a positive number', test: (x) => x > 0 };
const nonNegative: NumberCheck = { integer: false, expected: 'a non-negative number', test: (x) => x >= 0 };
const beta: NumberCheck = { integer: false, expected: 'a number in [0, 1)', test: (x) => x >= 0 && x < 1 };
const seedRange: NumberCheck = { integer: true, expected: 'an integer in [0, 2^32)', test: (x) => x >= 0 && x < 2 ** 32 };
const normEps: NumberCheck = { integer: false, expected: 'a number in (0, 1)', test: (x) => x > 0 && x < 1 };
const validationFraction: NumberCheck = {
  integer: false,
  expected: 'a number in (0, 0.5]',
  test: (x) => x > 0 && x <= 0.5,
};
// 256 byte tokens + <|endoftext|> is the smallest byte-level BPE vocabulary (no merges).
const bpeVocab: NumberCheck = { integer: true, expected: 'an integer in [257, 1048576]', test: (x) => x >= 257 && x <= 2 ** 20 };

export type FieldSpec =
  | { kind: 'number'; check: NumberCheck; default?: number | string }
  | { kind: 'enum'; values: readonly string[]; default: string }
  | { kind: 'boolean'; default: boolean }
  | { kind: 'string'; default?: string; pattern?: RegExp; expected?: string }
  | { kind: 'corpus'; default: string }; // "default", a path, or a list of paths

export type SectionName = 'model' | 'routing' | 'data' | 'tokenizer' | 'train';

export const TOP_LEVEL: Record<string, FieldSpec> = {
  // The name becomes a folder name (checkpoints/<name>/dense); the default is the file's base name.
  name: { kind: 'string', pattern: /^[A-Za-z0-9][A-Za-z0-9._-]*$/, expected: 'letters, digits, ".", "_" or "-"' },
  seed: { kind: 'number', check: seedRange, default: 1234 },
};

export const SECTIONS: Record<SectionName, Record<string, FieldSpec>> = {
  model: {
    hidden_size: { kind: 'number', check: positiveInt },
    num_hidden_layers: { kind: 'number', check: positiveInt },
    num_attention_heads: { kind: 'number', check: positiveInt },
    num_key_value_heads: { kind: 'number', check: positiveInt, default: 'num_attention_heads' },
    num_experts: { kind: 'number', check: positiveInt },
    moe_intermediate_size: { kind: 'number', check: positiveInt },
    shared_expert_intermediate_size: { kind: 'number', check: nonNegativeInt, default: 0 },
    num_experts_per_tok: { kind: 'number', check: positiveInt, default: 'min(2, num_experts)' },
    max_position_embeddings: { kind: 'number', check: positiveInt, default: 'seq_len' },
    rope_theta: { kind: 'number', check: positive, default: 10000 },
    rms_norm_eps: { kind: 'number', check: normEps, default: 1e-6 },
    tie_word_embeddings: { kind: 'boolean', default: true },
    // Megrez2 (docs/design.md §1): one pool of routed experts per f consecutive layers from first_k_dense_replace
    // on; pre_gate routes layer l on layer l−1's post-attention-norm output.
    experts_shared_frequency: { kind: 'number', check: positiveInt, default: 1 },
    first_k_dense_replace: { kind: 'number', check: nonNegativeInt, default: 0 },
    // The dense layers' MLP width (layers before first_k_dense_replace); left out of the resolved recipe without
    // dense layers or at its default, the dense MLP of one MoE layer's size.
    intermediate_size: { kind: 'number', check: positiveInt, default: 'num_experts * moe_intermediate_size' },
    pre_gate: { kind: 'boolean', default: false },
    // Krajewski et al.'s granularity G: each of num_experts experts of width moe_intermediate_size is split into G
    // experts of width moe_intermediate_size / G, and num_experts_per_tok and routing.top_k are multiplied by G, so
    // total and active expert parameters stay equal. The resolved model holds the split shape (load.ts).
    granularity: { kind: 'number', check: positiveInt, default: 1 },
    // MoA (docs/design.md §12): A attention experts per layer of N_h query heads each, A · N_h = num_attention_heads.
    // Both are left out of the resolved recipe at A = 0, so recipes without them hash as before.
    attention_experts: { kind: 'number', check: nonNegativeInt, default: 0 },
    // Not checked as an integer here: the loader names attention_experts when it does not divide the heads.
    heads_per_attention_expert: { kind: 'number', check: positive, default: 'num_attention_heads / max(attention_experts, 1)' },
  },
  routing: {
    mode: { kind: 'enum', values: ['dense', 'topk'], default: 'dense' },
    mi_alpha: { kind: 'number', check: nonNegative, default: 1e-2 },
    top_k: { kind: 'number', check: positiveInt, default: 'min(2, num_experts)' },
    balance_alpha: { kind: 'number', check: nonNegative, default: 1e-2 },
    // topk only: before_topk weights the selected experts by the softmax over all experts (un-renormalised, as
    // DS-MoE is served); after_topk by the softmax over the selected experts' logits (Krajewski et al.'s choice
    // for fine-grained experts; Qwen2-MoE's norm_topk_prob).
    softmax: { kind: 'enum', values: ['before_topk', 'after_topk'], default: 'before_topk' },
    // ST-MoE's router z-loss weight: mean over tokens of (log Σ_e exp(router logit_e))², averaged over layers.
    z_loss_alpha: { kind: 'number', check: nonNegative, default: 0 },
    // The attention router's MI-loss weight (MoA only; left out of the resolved recipe at attention_experts 0).
    mi_alpha_attention: { kind: 'number', check: nonNegative, default: 'mi_alpha' },
  },
  data: {
    corpus: { kind: 'corpus', default: 'default' },
    text_field: { kind: 'string', default: 'text', pattern: /^.+$/, expected: 'a non-empty field name' },
    validation_fraction: { kind: 'number', check: validationFraction, default: 0.05 },
    seq_len: { kind: 'number', check: positiveInt },
  },
  tokenizer: {
    type: { kind: 'enum', values: ['byte', 'bpe'], default: 'byte' },
    vocab_size: { kind: 'number', check: bpeVocab, default: 4096 }, // read for bpe only
  },
  train: {
    batch_size: { kind: 'number', check: positiveInt },
    grad_accum: { kind: 'number', check: positiveInt, default: 1 },
    // One of max_steps and tokens is required; tokens sets max_steps = ceil(tokens / tokens per step).
    max_steps: { kind: 'number', check: positiveInt },
    tokens: { kind: 'number', check: positive },
    lr: { kind: 'number', check: positive },
    min_lr: { kind: 'number', check: nonNegative, default: 'lr / 10' },
    warmup_steps: { kind: 'number', check: nonNegativeInt, default: 'ceil(max_steps / 20)' },
    weight_decay: { kind: 'number', check: nonNegative, default: 0.1 },
    beta1: { kind: 'number', check: beta, default: 0.9 },
    beta2: { kind: 'number', check: beta, default: 0.95 },
    adam_eps: { kind: 'number', check: positive, default: 1e-8 },
    grad_clip: { kind: 'number', check: nonNegative, default: 1.0 },
    log_every: { kind: 'number', check: positiveInt, default: 10 },
    eval_every: { kind: 'number', check: positiveInt, default: 100 },
    eval_tokens: { kind: 'number', check: positiveInt, default: 16384 },
    checkpoint_every: { kind: 'number', check: positiveInt, default: 500 },
    // The native kernels' matrix products: f32, or bf16 operands with f32 sums and f32 master weights (AVX-512
    // BF16 only; docs/training-kernels.md). Left out of the resolved recipe at f32, so recipes hash as before.
    compute_dtype: { kind: 'enum', values: ['f32', 'bf16'], default: 'f32' },
  },
};

/** Variables that are not fields: computed from the model shape and the tokenizer. */
export const DERIVED_NAMES = ['params', 'vocab_size'] as const;

/** The byte tokenizer's vocabulary: 256 bytes and <|endoftext|>. */
export const BYTE_VOCAB_SIZE = 257;
