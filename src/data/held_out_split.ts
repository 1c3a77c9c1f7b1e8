/**
 * The text a model is scored or calibrated on, found by one rule for every command that needs it (`dsmoe eval` of a
 * dense or sparse folder, `dsmoe convert`'s calibration, `dsmoe report`):
 *
 * - `--text FILE`: that file, one token sequence;
 * - else the validation split of the recipe the model was trained with: `--recipe FILE`, or the recipe named in the
 *   dense folder's config.json ("dsmoe" block: recipe, recipe_file, recipe_hash) found at the recorded file, then as
 *   recipes/<name>.{yaml,yml,json} in the working directory, then in the package. A sparse plan folder leads to its
 *   dense folder through plan.json `source.dir`. The recipe must hash to the recorded `recipe_hash`.
 *
 * The split itself is the trainer's (prepareData → TokenDataset: same blocks, same seeded choice, each block
 * tokenized on its own), tokenized with the model folder's own tokenizer. Anything that cannot be found or checked
 * is a one-line UserError naming the file and the flag that fixes it: scoring or calibrating on other text than the
 * user thinks would make every figure downstream wrong without a word.
 *
 * The windows are cut here too, for every command, by one rule: a tokenizer that puts a BOS before prompts
 * (`Tokenizer.bosId`: imported Llama/Mistral/Mixtral) gets it at the start of every window (bosWindows,
 * docs/interop.md "BOS"); tokenizers without one (dsmoe's own, GPT-2/Qwen2) get the windows they always had.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { readJsonFile } from '../checkpoint/files';
import { loadRecipe, recipeHash, type Recipe } from '../recipe';
import { packageRoot } from './corpus';
import { textWindows, type Windows } from './dataset';
import { prepareData } from './prepare';
import { loadTokenizer, type Tokenizer } from './tokenizer';

export interface HeldOutOptions {
  /** `--recipe FILE`: the recipe the model was trained with (checked against the recorded hash when there is one). */
  recipe?: string;
  /** `--text FILE`: score or calibrate on this UTF-8 file instead of the validation split. */
  text?: string;
  /**
   * The model folder's tokenizer, when the caller reads it with another loader (imported Hugging Face folders:
   * src/interop) or has it loaded already. Default: `loadTokenizer(modelDir)`.
   */
  tokenizer?: Tokenizer;
}

export interface HeldOutSplit {
  /** 'validation': the training recipe's validation split; 'text': a `--text` file. */
  kind: 'validation' | 'text';
  /** What is scored, for logs and reports: "validation split of /…/tiny.yaml (seed 1234)", or the text file. */
  source: string;
  /** The recipe the split was rebuilt from (null for `--text`). */
  recipe: Recipe | null;
  /** The recipe file, or the text file. */
  file: string;
  tokenizer: Tokenizer;
  /** Token passages in text order: the validation runs (adjacent held-out blocks joined), or the whole text. */
  runs: Int32Array[];
  /** UTF-8 bytes a token stands for; <|endoftext|> counts one byte (a document boundary), as in the trainer. */
  tokenBytes(id: number): number;
  /** Bytes per token over the whole source (the trainer's validationBytesPerToken; the file's for `--text`). */
  bytesPerToken: number;
  /**
   * Windows to score, each from position 0. Validation: the trainer's held-out windows (`context` inputs and the
   * `context` tokens after them, floor(maxTokens / context) windows, maxTokens default: the recipe's eval_tokens).
   * Text: non-overlapping windows of `context` tokens (context − 1 predictions each, a shorter last one takes the
   * rest; SPEC §7), at most `maxTokens` predictions (default: all). Equal-length windows come as one group.
   * With the tokenizer's BOS the shapes are the same, but each window's first token is the BOS (bosWindows).
   */
  windows(context: number, maxTokens?: number): Windows[];
  /**
   * Non-overlapping windows of exactly `context` tokens cut from the runs in text order, `maxTokens` tokens in all
   * at most (calibration): window i of a passage starts where scoring window i does. With the tokenizer's BOS each
   * is the BOS and the next context − 1 tokens, so every token of a passage is in one window (for `--text` these
   * are the scoring windows).
   */
  calibrationWindows(context: number, maxTokens: number): number[][];
}

const RECIPE_EXTENSIONS = ['.yaml', '.yml', '.json'];

/** The held-out text of the model in `modelDir` (a dense checkpoint folder or a sparse plan folder). */
export function heldOutSplit(modelDir: string, options: HeldOutOptions = {}): HeldOutSplit {
  if (options.recipe !== undefined && options.text !== undefined) {
    throw new UserError('--recipe and --text exclude each other: --text FILE scores that file, --recipe FILE names the training recipe whose validation split is scored');
  }
  if (options.text !== undefined) return textSplit(options.text, options.tokenizer ?? loadTokenizer(modelDir));
  const { file, recipe } = trainingRecipe(modelDir, options.recipe);
  const tokenizer = options.tokenizer ?? loadTokenizer(modelDir);
  let dataset;
  try {
    ({ dataset } = prepareData(recipe, { tokenizer }));
  } catch (error) {
    throw withHint(error, options.recipe);
  }
  const runs = dataset.validationRuns.map((run) => dataset.tokens.subarray(run.start, run.end));
  const source = `validation split of ${file} (seed ${recipe.seed})`;
  const bos = tokenizer.bosId;
  return {
    kind: 'validation',
    source,
    recipe,
    file,
    tokenizer,
    runs,
    tokenBytes: byteLengths(tokenizer),
    bytesPerToken: dataset.validationBytesPerToken,
    windows: (context, maxTokens = recipe.train.eval_tokens) => {
      const longest = runs.reduce((n, run) => Math.max(n, run.length), 0);
      const needed = bos === undefined ? context + 1 : context; // the BOS stands in for the unpredicted first token
      if (longest < needed) throw new UserError(`${source}: no passage holds ${needed} tokens (the longest has ${longest}); lower the context`);
      if (bos === undefined) return [dataset.validationWindows(maxTokens, context)];
      const groups = bosWindows(runs, bos, context, maxTokens, false);
      if (groups.length === 0) throw new UserError(`${source}: ${maxTokens} tokens to score fill no window of ${context} predictions; score more tokens or lower the context`);
      return groups;
    },
    calibrationWindows: (context, maxTokens) => calibrationWindows(source, runs, context, maxTokens, bos),
  };
}

/** `--text FILE`: the whole file, one token sequence. */
function textSplit(file: string, tokenizer: Tokenizer): HeldOutSplit {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UserError(`--text ${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const tokens = Int32Array.from(tokenizer.encode(text));
  if (tokens.length < 2) throw new UserError(`--text ${file}: needs at least 2 tokens to score, got ${tokens.length}`);
  return {
    kind: 'text',
    source: file,
    recipe: null,
    file,
    tokenizer,
    runs: [tokens],
    tokenBytes: byteLengths(tokenizer),
    bytesPerToken: Buffer.byteLength(text, 'utf8') / tokens.length,
    windows: (context, maxTokens) =>
      tokenizer.bosId === undefined ? textWindows(tokens, context, maxTokens) : bosWindows([tokens], tokenizer.bosId, context - 1, maxTokens ?? Infinity, true),
    calibrationWindows: (context, maxTokens) => calibrationWindows(file, [tokens], context, maxTokens, tokenizer.bosId),
  };
}

/**
 * Scoring windows of a tokenizer that puts a BOS before prompts. Without a BOS a window's first token is only read,
 * never predicted; here the BOS takes that place, so the window shapes stay (positions and predictions per window)
 * and the text tokens follow on from the previous window: window i of a passage r predicts r[iP … iP + P − 1]
 * (P = `predictions`) from the inputs [BOS, r[iP] … r[iP + P − 2]], and every token of a passage is predicted once,
 * its first ones from the BOS alone. At most `maxTokens` predictions; with `shortLast` a passage's remaining tokens
 * (fewer than P) make one shorter last window, in its own group after the full windows.
 */
export function bosWindows(runs: ArrayLike<number>[], bos: number, predictions: number, maxTokens: number, shortLast: boolean): Windows[] {
  const full: [ArrayLike<number>, number][] = []; // (passage, first predicted index)
  const short: [ArrayLike<number>, number][] = [];
  let total = 0;
  for (const run of runs) {
    let start = 0;
    for (; start + predictions <= run.length && total + predictions <= maxTokens; start += predictions) {
      full.push([run, start]);
      total += predictions;
    }
    const rest = run.length - start;
    if (shortLast && rest > 0 && rest < predictions && total + rest <= maxTokens) {
      short.push([run, start]);
      total += rest;
    }
  }
  const group = (windows: [ArrayLike<number>, number][], length: number): Windows => {
    const inputs = new Int32Array(windows.length * length); // [count·length]
    const targets = new Int32Array(windows.length * length); // [count·length]
    windows.forEach(([run, start], i) => {
      inputs[i * length] = bos;
      for (let t = 0; t < length; t++) {
        if (t > 0) inputs[i * length + t] = run[start + t - 1];
        targets[i * length + t] = run[start + t];
      }
    });
    return { inputs, targets, count: windows.length };
  };
  const groups = full.length ? [group(full, predictions)] : [];
  for (const window of short) groups.push(group([window], window[0].length - window[1]));
  return groups;
}

/**
 * Cuts token runs into non-overlapping windows of `context` tokens, up to `maxTokens` tokens in all. With `bos`,
 * each window is the BOS and the next context − 1 tokens of its run.
 */
export function cutWindows(runs: ArrayLike<number>[], context: number, maxTokens: number, bos?: number): number[][] {
  const windows: number[][] = [];
  const step = bos === undefined ? context : context - 1; // text tokens per window
  let total = 0;
  for (const run of runs) {
    for (let start = 0; start + step <= run.length && total + context <= maxTokens; start += step) {
      const text = Array.from({ length: step }, (_, t) => run[start + t]);
      windows.push(bos === undefined ? text : [bos, ...text]);
      total += context;
    }
  }
  return windows;
}

function calibrationWindows(source: string, runs: Int32Array[], context: number, maxTokens: number, bos: number | undefined): number[][] {
  const windows = cutWindows(runs, context, maxTokens, bos);
  if (windows.length === 0) {
    const longest = runs.reduce((n, run) => Math.max(n, run.length), 0);
    const needed = bos === undefined ? context : context - 1; // text tokens per window
    throw new UserError(`calibration text ${source}: no passage holds ${needed} tokens (the longest has ${longest}); lower --calib-context`);
  }
  return windows;
}

function byteLengths(tokenizer: Tokenizer): (id: number) => number {
  const lengths = new Map<number, number>();
  return (id) => {
    let n = lengths.get(id);
    if (n === undefined) lengths.set(id, (n = id === tokenizer.eosId ? 1 : tokenizer.tokenBytes(id).length));
    return n;
  };
}

// --- finding and checking the training recipe ---------------------------------------------------------------------

/** What the dense folder's config.json records about its training run. */
interface RecordedRecipe {
  configFile: string; // the config.json read (or plan.json for a random-init plan)
  denseDir: string | null; // null: a random-init plan, trained on nothing
  name: string | null;
  file: string | null;
  hash: string | null;
}

function hint(explicitRecipe: string | undefined): string {
  return explicitRecipe === undefined ? 'pass --recipe FILE (the recipe it was trained with) or --text FILE' : 'pass --text FILE to score a text instead';
}

/** A recipe that fails to load (bad file, missing or unreadable corpus) gets the flags that work around it. */
function withHint(error: unknown, explicitRecipe: string | undefined): unknown {
  return error instanceof UserError ? new UserError(`${error.message}; ${hint(explicitRecipe)}`) : error;
}

function recordedRecipe(modelDir: string, explicitRecipe: string | undefined): RecordedRecipe {
  let denseDir = modelDir;
  const planFile = path.join(modelDir, 'plan.json');
  if (fs.existsSync(planFile)) {
    const source = ((readJsonFile(planFile) as Record<string, unknown>).source ?? {}) as Record<string, unknown>;
    if (typeof source.dir !== 'string') {
      if (explicitRecipe !== undefined) return { configFile: planFile, denseDir: null, name: null, file: null, hash: null };
      throw new UserError(`${planFile}: a random-init plan (no source.dir) was trained on no text, so it has no held-out split; pass --text FILE (or --recipe FILE to score a recipe's validation split)`);
    }
    denseDir = source.dir;
  }
  const configFile = path.join(denseDir, 'config.json');
  let config: Record<string, unknown>;
  try {
    config = readJsonFile(configFile) as Record<string, unknown>;
  } catch (error) {
    throw withHint(error, explicitRecipe);
  }
  const dsmoe = (config.dsmoe ?? {}) as Record<string, unknown>;
  const text = (key: string) => (typeof dsmoe[key] === 'string' ? (dsmoe[key] as string) : null);
  return { configFile, denseDir, name: text('recipe'), file: text('recipe_file'), hash: text('recipe_hash') };
}

/** The training recipe by the rule above, loaded and checked against the recorded hash. */
function trainingRecipe(modelDir: string, explicitRecipe: string | undefined): { file: string; recipe: Recipe } {
  const recorded = recordedRecipe(modelDir, explicitRecipe);
  let file = explicitRecipe;
  if (file === undefined) {
    if (!recorded.name) throw new UserError(`${recorded.configFile}: no training recipe recorded (dsmoe.recipe); ${hint(undefined)}`);
    const name = recorded.name;
    const folders = [...new Set([path.resolve('recipes'), path.join(packageRoot(), 'recipes')])]; // one, run from the package
    const candidates = [
      ...(recorded.file ? [recorded.file] : []),
      ...folders.flatMap((folder) => RECIPE_EXTENSIONS.map((ext) => path.join(folder, name + ext))),
    ];
    file = candidates.find((candidate) => fs.existsSync(candidate));
    if (!file) {
      const places = [...(recorded.file ? [recorded.file] : []), ...folders.map((folder) => `${folder}/${name}.{yaml,yml,json}`)];
      throw new UserError(`${recorded.configFile}: training recipe "${name}" not found (looked at ${places.join(', ')}); ${hint(undefined)}`);
    }
    if (!recorded.hash) {
      throw new UserError(`${recorded.configFile}: records recipe "${name}" but no dsmoe.recipe_hash, so ${file} cannot be checked against it; ${hint(undefined)}`);
    }
  }
  let recipe: Recipe;
  try {
    recipe = loadRecipe(file);
  } catch (error) {
    throw withHint(error, explicitRecipe);
  }
  if (recorded.hash && recipeHash(recipe) !== recorded.hash) {
    throw new UserError(
      `${file}: not the recipe ${recorded.denseDir} was trained with (its hash differs from dsmoe.recipe_hash in ${recorded.configFile}), so its validation split may differ; ${hint(undefined)}`,
    );
  }
  return { file: path.resolve(file), recipe };
}
