/**
 * Held-out token windows for calibration, tokenized with the dense folder's own tokenizer:
 * - `--calib-text FILE`: the file's text;
 * - otherwise the validation split of the training corpus, reproduced exactly as training cut it (same text
 *   blocks, same seeded block choice, each block tokenized on its own). The recipe comes from `--recipe`, or
 *   `recipes/<name>.yaml` for the recipe name recorded in config.json, or — when neither is there — the default
 *   corpus with the seed from trainer_state.json and the recipe defaults (validation fraction 0.05).
 * Only the held-out blocks are tokenized, so this stays fast on the full corpus.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import type { Tokenizer } from '../data/tokenizer';
import { loadAnyTokenizer } from '../interop/hf_tokenizer';
import { loadCorpusText, packageRoot, type CorpusSpec } from '../data/corpus';
import { cutTextBlocks } from '../data/prepare';
import { validationBlockMask } from '../data/dataset';
import { loadRecipe } from '../recipe/load';

export interface CalibrationTokens {
  windows: number[][]; // non-overlapping windows of `context` tokens, in text order
  source: string; // human description, for the report
}

const DEFAULT_VALIDATION_FRACTION = 0.05;
const DEFAULT_SEED = 1234;

/** Cuts token runs into non-overlapping windows of `context` tokens, up to `maxTokens` tokens in all. */
export function cutWindows(runs: number[][], context: number, maxTokens: number): number[][] {
  const windows: number[][] = [];
  let total = 0;
  for (const run of runs) {
    for (let start = 0; start + context <= run.length && total + context <= maxTokens; start += context) {
      windows.push(run.slice(start, start + context));
      total += context;
    }
  }
  return windows;
}

export function calibrationTokens(options: {
  denseDir: string;
  hfConfig: Record<string, unknown>;
  vocabSize: number;
  context: number;
  maxTokens: number;
  textFile?: string;
  recipeFile?: string;
}): CalibrationTokens {
  if (options.maxTokens <= 0) return { windows: [], source: 'none' };
  const tokenizer = loadAnyTokenizer(options.denseDir); // imported folders bring their own byte-level BPE
  if (tokenizer.vocabSize > options.vocabSize) {
    throw new UserError(
      `${path.join(options.denseDir, 'tokenizer.json')}: ${tokenizer.vocabSize} tokens, more than the model's vocab_size ${options.vocabSize}`,
    );
  }
  let runs: number[][];
  let source: string;
  if (options.textFile) {
    let text: string;
    try {
      text = fs.readFileSync(options.textFile, 'utf8');
    } catch (error) {
      throw new UserError(`${options.textFile}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    runs = [tokenizer.encode(text)];
    source = options.textFile;
  } else {
    const split = heldOutSplit(options);
    runs = heldOutRuns(split, tokenizer);
    source = split.description;
  }
  const windows = cutWindows(runs, options.context, options.maxTokens);
  if (windows.length === 0) {
    const have = runs.reduce((n, r) => Math.max(n, r.length), 0);
    throw new UserError(`calibration text ${source}: no passage holds ${options.context} tokens (the longest has ${have}); lower --calib-context`);
  }
  return { windows, source };
}

interface HeldOutSplit {
  corpus: CorpusSpec;
  seed: number;
  validationFraction: number;
  description: string;
}

function heldOutSplit(options: { denseDir: string; hfConfig: Record<string, unknown>; recipeFile?: string }): HeldOutSplit {
  const dsmoe = (options.hfConfig.dsmoe ?? {}) as Record<string, unknown>;
  const recipeName = typeof dsmoe.recipe === 'string' ? dsmoe.recipe : undefined;
  const candidate = options.recipeFile ?? (recipeName ? path.join(packageRoot(), 'recipes', `${recipeName}.yaml`) : undefined);
  if (candidate && (options.recipeFile || fs.existsSync(candidate))) {
    const recipe = loadRecipe(candidate);
    return {
      corpus: { corpus: recipe.data.corpus, text_field: recipe.data.text_field },
      seed: recipe.seed,
      validationFraction: recipe.data.validation_fraction,
      description: `validation split of ${candidate} (seed ${recipe.seed})`,
    };
  }
  let seed = DEFAULT_SEED;
  const statePath = path.join(options.denseDir, 'trainer_state.json');
  if (fs.existsSync(statePath)) {
    try {
      const state = JSON.parse(fs.readFileSync(statePath, 'utf8'));
      if (Number.isInteger(state.seed)) seed = state.seed;
    } catch {
      // an unreadable trainer state only costs us the seed; the default is documented
    }
  }
  return {
    corpus: { corpus: 'default', text_field: 'text' },
    seed,
    validationFraction: DEFAULT_VALIDATION_FRACTION,
    description: `validation split of the default corpus (seed ${seed}, fraction ${DEFAULT_VALIDATION_FRACTION})`,
  };
}

/** Token runs of adjacent held-out blocks, each block tokenized on its own as training did. */
function heldOutRuns(split: HeldOutSplit, tokenizer: Tokenizer): number[][] {
  const blocks = cutTextBlocks(loadCorpusText(split.corpus));
  const mask = validationBlockMask(split.seed, split.validationFraction, blocks.length);
  const runs: number[][] = [];
  let previous = false;
  blocks.forEach((block, i) => {
    if (!mask[i]) {
      previous = false;
      return;
    }
    const ids = tokenizer.encode(block);
    if (previous) runs[runs.length - 1] = runs[runs.length - 1].concat(ids);
    else runs.push(ids);
    previous = true;
  });
  return runs;
}
