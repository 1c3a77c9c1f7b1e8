/**
 * `evaluateSparse`: held-out quality of a plan on the native runtime, in the same units as the dense evaluation
 * (src/train/evaluate.ts): loss in nats, perplexity, bits per byte, plus the mean experts each token used per layer.
 * The text is src/data's held-out split: a `--text` file, or the validation split of the recipe the plan's source
 * checkpoint was trained with, exactly as the trainer splits it.
 */
import { UserError } from '../errors';
import { heldOutSplit } from '../data/held_out_split';
import { windowSequences } from '../data/dataset';
import { loadAnyTokenizer } from '../interop/hf_tokenizer';
import type { Device } from './backend';
import { SparseModel, type RuntimeMode, type ScoreResult } from './model';
import type { ExpertCacheOptions, ExpertCacheStats } from './expert_cache';
import type { Residency } from './residency';

export interface SparseEvalOptions {
  text?: string; // path of a UTF-8 text file to score
  recipe?: string; // the recipe the source checkpoint was trained with (default: the one its config.json names)
  context?: number; // tokens per window (default: the plan's max_position_embeddings)
  threads?: number;
  device?: Device; // default 'auto'
  mode?: RuntimeMode; // 'plan' (default) or 'dense'
  maxTokens?: number; // held-out split only: at most this many predictions (default: the recipe's eval_tokens)
  expertCache?: ExpertCacheOptions; // read routed experts on demand (results are identical)
  residency?: Residency; // how the weights are held in memory (results are identical)
}

export interface SparseEvalResult {
  loss: number;
  perplexity: number;
  bits_per_byte: number;
  tokens: number;
  routing: number[]; // per layer: mean experts selected per token
  mode: RuntimeMode;
  source: string; // the text file, or "validation split of <recipe file> (seed S)"
  expert_cache?: ExpertCacheStats; // with expertCache: its counters over the evaluation
  device: string; // 'cpu' or 'cuda (<card>)'
}

export async function evaluateSparse(dir: string, options: SparseEvalOptions = {}): Promise<SparseEvalResult> {
  // before mapping the weights; the plan folder's tokenizer is dsmoe's own or an imported model's
  const split = heldOutSplit(dir, { recipe: options.recipe, text: options.text, tokenizer: loadAnyTokenizer(dir) });
  const model = SparseModel.load(dir, { threads: options.threads, device: options.device, expertCache: options.expertCache, residency: options.residency });
  try {
    model.setMode(options.mode ?? 'plan');
    const context = options.context ?? model.maxContext;
    if (split.tokenizer.vocabSize > model.vocabSize) {
      throw new UserError(`${dir}: tokenizer has ${split.tokenizer.vocabSize} tokens but the model's vocabulary is ${model.vocabSize}`);
    }
    model.resetStats();
    // The split's windows, cut by its one rule (with a BOS first for tokenizers that put one before prompts:
    // docs/interop.md "BOS"). A text's windows are forwarded whole, as SparseModel.score forwards its windows.
    let result: ScoreResult;
    if (split.kind === 'text') {
      result = await model.scoreSequences(windowSequences(split.windows(context)));
    } else {
      const [held] = split.windows(context, options.maxTokens); // the trainer's windows: all of one length, one group
      result = await model.scoreWindows(held.inputs, held.targets, held.count);
    }
    let bytes = 0;
    for (const id of result.targets) bytes += split.tokenBytes(id);
    const stats = model.routingStats();
    const cache = model.expertCacheStats();
    return {
      loss: result.loss,
      perplexity: Math.exp(result.loss),
      bits_per_byte: result.lossSum / Math.LN2 / Math.max(1, bytes),
      tokens: result.tokens,
      routing: stats.expertCounts.map((counts) => counts.reduce((a, b) => a + b, 0) / Math.max(1, stats.tokens)),
      mode: model.mode,
      source: split.source,
      ...(cache ? { expert_cache: cache } : {}),
      device: model.device,
    };
  } finally {
    await model.dispose();
  }
}
