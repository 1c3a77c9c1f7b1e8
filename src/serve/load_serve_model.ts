import path from 'node:path';
import { UserError } from '../errors';
import { writeRandomPlan } from '../plan/random_plan';
import { loadAnyTokenizer } from '../interop/hf_tokenizer';
import type { ModelConfig } from '../model/config';
import type { Device } from '../runtime/backend';
import { loadNative } from '../runtime/native';
import { openPlan } from '../runtime/open_plan';
import { expertCacheRates, type ExpertCacheOptions } from '../runtime/expert_cache';
import type { Residency } from '../runtime/residency';
import { nativeSampler } from '../runtime/sampling';
import type { ServeModel } from './batch_evaluator';
import { loadChatTemplate } from './chat_template';

export interface LoadServeModelOptions {
  /** Runtime threads; default all hardware threads. */
  threads?: number;
  /** Sequences the KV cache holds at once (the largest decode batch). */
  slots: number;
  /** Positions per sequence; default the model's max_position_embeddings. */
  maxContext?: number;
  /** Name clients use; default the folder's last two path components (e.g. `tiny/sparse`). */
  id?: string;
  device?: Device;
  /** Keep only part of the routed experts in memory (src/runtime/expert_cache.ts); absent: all resident. */
  expertCache?: ExpertCacheOptions;
  /** How the weights are held in memory (src/runtime/residency.ts); default defaultResidency for the plan's size. */
  residency?: Residency;
}

/**
 * Opens a sparse plan folder for serving: the native model (weights memory-mapped) with one context of `slots`
 * sequences (`openPlan`, as SparseModel opens its one-sequence context), the plan's tokenizer, and the runtime's
 * own sampler.
 */
export async function loadServeModel(dir: string, options: LoadServeModelOptions): Promise<ServeModel> {
  // Tokenizer and chat template first, so a bad one leaves nothing allocated.
  const tokenizer = loadAnyTokenizer(dir); // dsmoe's own or an imported model's
  const chatTemplate = loadChatTemplate(dir);
  const { loaded, model: native, context, maxContext, device } = openPlan(dir, {
    threads: options.threads,
    device: options.device,
    slots: options.slots,
    maxContext: options.maxContext,
    withinTrainedContext: true,
    expertCache: options.expertCache,
    residency: options.residency,
  });
  const config = loaded.plan.config;
  if (tokenizer.vocabSize > config.vocab_size) {
    native.dispose();
    throw new UserError(`${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${config.vocab_size}`);
  }
  const kernels = loadNative().kernels;
  const absolute = path.resolve(dir);
  return {
    id: options.id ?? `${path.basename(path.dirname(absolute))}/${path.basename(absolute)}`,
    evaluator: {
      evaluate: (tokens, slots, positions, outputRows) => context.evaluate(tokens, slots, positions, outputRows),
      clearSlot: (slot) => context.clearSlot(slot),
    },
    tokenizer: {
      encode: (text) => tokenizer.encode(text),
      decode: (ids) => tokenizer.decode(ids),
      tokenBytes: (id) => tokenizer.tokenBytes(id),
      eosId: tokenizer.eosId,
      ...(tokenizer.bosId !== undefined ? { bosId: tokenizer.bosId } : {}),
      vocabSize: tokenizer.vocabSize,
    },
    vocabSize: config.vocab_size,
    slots: options.slots,
    maxContext,
    chatTemplate,
    device,
    createSampler: (sampling) => nativeSampler(kernels, sampling),
    dispose: () => native.dispose(),
    expertCacheStats: () => {
      const raw = native.expertCacheStats();
      return raw ? expertCacheRates(raw) : null;
    },
  };
}

/** The tiny recipe's shape with the byte tokenizer: what the load test and the serve tests use by default. */
export const TINY_SERVE_CONFIG: ModelConfig = {
  vocab_size: 257,
  hidden_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 8,
  moe_intermediate_size: 64,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 512,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
};

/** Writes a random-init top-2 plan of TINY_SERVE_CONFIG; returns a one-line description of it. */
export function writeBenchPlan(dir: string, config: ModelConfig = TINY_SERVE_CONFIG): string {
  writeRandomPlan(dir, config, { dtype: 'f32', seed: 1, k: 2 });
  return `random-init plan (d ${config.hidden_size}, ${config.num_hidden_layers} layers, ${config.num_experts} experts × ${config.moe_intermediate_size}, top-2, f32, byte tokenizer)`;
}
