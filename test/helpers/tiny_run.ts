import { buildTokenizer, loadCorpusText, TokenDataset } from '../../src/data';
import type { Recipe } from '../../src/recipe';

/**
 * A shrunken tiny recipe and a small slice of the embedded corpus, so trainer tests take seconds.
 * `overrides` replace whole sections' fields.
 */
export function tinyTestRecipe(
  overrides: { train?: Partial<Recipe['train']>; routing?: Partial<Recipe['routing']>; model?: Partial<Recipe['model']> } = {},
): Recipe {
  return {
    name: 'test-tiny',
    file: '/virtual/test-tiny.yaml',
    seed: 7,
    model: {
      vocab_size: 257,
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      num_experts: 4,
      moe_intermediate_size: 16,
      shared_expert_intermediate_size: 0,
      num_experts_per_tok: 2,
      max_position_embeddings: 32,
      rope_theta: 10000,
      rms_norm_eps: 1e-6,
      tie_word_embeddings: true,
      ...overrides.model,
    },
    routing: { mode: 'dense', mi_alpha: 1e-2, top_k: 2, balance_alpha: 1e-2, ...overrides.routing },
    data: { corpus: 'default', text_field: 'text', validation_fraction: 0.1, seq_len: 32 },
    tokenizer: { type: 'byte', vocab_size: 257 },
    train: {
      batch_size: 8,
      grad_accum: 1,
      max_steps: 8,
      lr: 1e-2,
      min_lr: 1e-3,
      warmup_steps: 3,
      weight_decay: 0.1,
      beta1: 0.9,
      beta2: 0.95,
      adam_eps: 1e-8,
      grad_clip: 1.0,
      log_every: 2,
      eval_every: 4,
      eval_tokens: 1024,
      checkpoint_every: 4,
      ...overrides.train,
    },
  };
}

let corpusSlice: string | null = null;

/** Byte tokenizer and a dataset over the first 200 kB of the embedded corpus. */
export function tinyTestData(recipe: Recipe) {
  corpusSlice ??= loadCorpusText({ corpus: 'default', text_field: 'text' }).slice(0, 200_000);
  const tokenizer = buildTokenizer({ type: 'byte', vocab_size: 257 }, corpusSlice);
  const tokens = Int32Array.from(tokenizer.encode(corpusSlice));
  const dataset = new TokenDataset(tokens, {
    seed: recipe.seed,
    validationFraction: recipe.data.validation_fraction,
    tokenBytes: (id) => tokenizer.tokenBytes(id),
    eosId: tokenizer.eosId,
  });
  return { tokenizer, dataset };
}
