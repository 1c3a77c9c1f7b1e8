/**
 * `evaluateSparse`: held-out quality of a plan on the native runtime, in the same units as the dense evaluation
 * (src/train/evaluate.ts): loss in nats, perplexity, bits per byte, plus the mean experts each token used per layer.
 * Text comes from a file (`text`), or else the held-out split of the corpus the source checkpoint was trained on
 * (rebuilt from its recipe with src/data, exactly as the trainer splits it).
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { loadTokenizer, packageRoot, prepareData, type Tokenizer } from '../data';
import { loadRecipe, recipeHash } from '../recipe';
import type { Plan } from '../plan/plan_format';
import { SparseModel, type RuntimeMode, type ScoreResult } from './model';

export interface SparseEvalOptions {
  text?: string; // path of a UTF-8 text file to score
  context?: number; // tokens per window (default: the plan's max_position_embeddings)
  threads?: number;
  mode?: RuntimeMode; // 'plan' (default) or 'dense'
  maxTokens?: number; // held-out split only: at most this many predictions (default: the recipe's eval_tokens)
}

export interface SparseEvalResult {
  loss: number;
  perplexity: number;
  bits_per_byte: number;
  tokens: number;
  routing: number[]; // per layer: mean experts selected per token
  mode: RuntimeMode;
  source: string; // the text file, or "held-out split of <recipe>"
}

export async function evaluateSparse(dir: string, options: SparseEvalOptions = {}): Promise<SparseEvalResult> {
  const model = SparseModel.load(dir, { threads: options.threads });
  try {
    model.setMode(options.mode ?? 'plan');
    const context = options.context ?? model.maxContext;
    const tokenizer = loadTokenizer(dir);
    if (tokenizer.vocabSize > model.vocabSize) {
      throw new UserError(`${dir}: tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${model.vocabSize}`);
    }
    model.resetStats();
    let result: ScoreResult;
    let source: string;
    if (options.text) {
      const text = readText(options.text);
      const ids = tokenizer.encode(text);
      if (ids.length < 2) throw new UserError(`${options.text}: needs at least 2 tokens of text, got ${ids.length}`);
      result = await model.score(ids, { context });
      source = options.text;
    } else {
      const held = heldOutWindows(model.plan, tokenizer, context, options.maxTokens);
      result = await model.scoreWindows(held.inputs, held.targets, held.count);
      source = held.source;
    }
    const bytes = bytesOf(result.targets, tokenizer);
    const stats = model.routingStats();
    return {
      loss: result.loss,
      perplexity: Math.exp(result.loss),
      bits_per_byte: result.lossSum / Math.LN2 / Math.max(1, bytes),
      tokens: result.tokens,
      routing: stats.expertCounts.map((counts) => counts.reduce((a, b) => a + b, 0) / Math.max(1, stats.tokens)),
      mode: model.mode,
      source,
    };
  } finally {
    await model.dispose();
  }
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UserError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** UTF-8 bytes the predicted tokens stand for (<|endoftext|> counts one byte, as in src/data). */
function bytesOf(ids: Int32Array, tokenizer: Tokenizer): number {
  const lengths = new Map<number, number>();
  let bytes = 0;
  for (const id of ids) {
    let n = lengths.get(id);
    if (n === undefined) lengths.set(id, (n = id === tokenizer.eosId ? 1 : tokenizer.tokenBytes(id).length));
    bytes += n;
  }
  return bytes;
}

/** The held-out windows of the recipe the plan's source checkpoint was trained with. */
function heldOutWindows(plan: Plan, tokenizer: Tokenizer, context: number, maxTokens?: number) {
  const denseDir = plan.source.dir;
  const noSplit = (why: string) =>
    new UserError(`no --text given and the held-out split cannot be rebuilt (${why}); pass --text FILE to score a text file`);
  if (!denseDir) throw noSplit('the plan has no source checkpoint (random-init plan)');
  let dsmoe: Record<string, unknown> | undefined;
  try {
    dsmoe = JSON.parse(fs.readFileSync(path.join(denseDir, 'config.json'), 'utf8')).dsmoe;
  } catch {
    throw noSplit(`cannot read ${path.join(denseDir, 'config.json')}`);
  }
  const name = typeof dsmoe?.recipe === 'string' ? dsmoe.recipe : undefined;
  if (!name) throw noSplit(`${denseDir}/config.json names no recipe`);
  const candidates = ['.yaml', '.yml', '.json'].map((ext) => path.join(packageRoot(), 'recipes', name + ext));
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) throw noSplit(`recipe ${name} not found under recipes/`);
  const recipe = loadRecipe(file);
  if (typeof dsmoe?.recipe_hash === 'string' && recipeHash(recipe) !== dsmoe.recipe_hash) {
    throw noSplit(`recipes/${path.basename(file)} changed since the checkpoint was trained (hash differs)`);
  }
  const { dataset } = prepareData(recipe, { tokenizer });
  const windows = dataset.validationWindows(maxTokens ?? recipe.train.eval_tokens, context);
  return { ...windows, source: `held-out split of ${name}` };
}
