import type { ExpertCacheStats } from '../runtime/expert_cache';
import type { ChatTemplate } from './chat_template';

/**
 * What the scheduler needs from a runtime: one llama.cpp-style batch call (docs/design.md §5) and a way to free a
 * slot's KV cache. `NativeContext` satisfies it; tests use a deterministic fake so the scheduler can be checked
 * without the native addon.
 */
export interface BatchEvaluator {
  /**
   * Runs one batch: token i belongs to sequence slot `slots[i]` at position `positions[i]`.
   * Returns logits for the rows listed in `outputRows`, row-major: [outputRows.length, vocabSize].
   */
  evaluate(tokens: Int32Array, slots: Int32Array, positions: Int32Array, outputRows: Int32Array): Promise<Float32Array>;
  /** Forgets everything cached for a slot, so a new sequence can start there at position 0. */
  clearSlot(slot: number): void;
}

/** The text side of a served model: the subset of `src/data/tokenizer.ts` the server uses. */
export interface ServeTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** The bytes one token stands for (for log-probability tokens: their text and `bytes`). */
  tokenBytes(id: number): Uint8Array;
  eosId: number;
  /** Put before text prompts, as transformers' `tokenizer(text)` does (Llama/Mistral's <s>); absent: none. */
  bosId?: number;
  vocabSize: number;
}

/** Chooses one request's tokens; each request owns one, seeded by its own seed. */
export interface RequestSampler {
  /** One token from one logits row [V]. */
  sample(logits: Float32Array): number;
}

export interface RequestSamplingOptions {
  temperature: number; // 0 = greedy
  topP: number; // (0, 1]
  seed: number;
}

/** A model ready to serve: an evaluator with `slots` sequences of at most `maxContext` tokens each. */
export interface ServeModel {
  /** Name clients pass as `model` and see in `GET /v1/models`. */
  id: string;
  evaluator: BatchEvaluator;
  tokenizer: ServeTokenizer;
  /** Logits per output row (the model's vocabulary, which may exceed the tokenizer's). */
  vocabSize: number;
  /** Sequences the evaluator holds at once: the largest decode batch. */
  slots: number;
  /** Positions per sequence: prompt plus generated tokens must fit. */
  maxContext: number;
  /** Renders chat messages into the prompt text (the model's template, or the plain default). */
  chatTemplate: ChatTemplate;
  /** A fresh sampler for one request (the runtime's own, so serve and `dsmoe generate` agree for a seed). */
  createSampler(options: RequestSamplingOptions): RequestSampler;
  /** The device the model runs on ('cpu' or 'cuda (<card>)'), for the start-up line; absent for fakes. */
  device?: string;
  /** Frees native memory; called once when the server has drained. */
  dispose(): void;
  /** Expert cache counters when the model runs with --expert-cache (GET /metrics shows them). */
  expertCacheStats?(): ExpertCacheStats | null;
}
