import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { bosWindows, cutWindows, heldOutSplit, type HeldOutSplit } from '../../src/data/held_out_split';
import { textWindows, windowSequences, type Windows } from '../../src/data/dataset';
import { prepareData } from '../../src/data/prepare';
import { loadTokenizer, type Tokenizer } from '../../src/data/tokenizer';
import { loadAnyTokenizer } from '../../src/interop/hf_tokenizer';
import { loadRecipe } from '../../src/recipe';
import { UserError } from '../../src/errors';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';
import { recordRecipe, writeTestRecipe } from '../helpers/recipe_fixtures';

afterAll(removeTempDirs);

const weights = randomDenseWeights(tinyConfig, 5);

/** A dense folder trained (as far as its config.json says) with a fresh copy of the test recipe. */
function trainedFolder(): { dense: string; recipe: string; root: string } {
  const root = tempDir('held-out');
  const recipe = writeTestRecipe(root, 'held-out-test');
  const dense = path.join(root, 'dense');
  writeDenseFolder(dense, tinyConfig, weights);
  recordRecipe(dense, recipe);
  return { dense, recipe, root };
}

/** A plan folder as far as the split reads one: plan.json's source and the copied tokenizer. */
function planFolder(source: Record<string, unknown>, tokenizerFrom: string): string {
  const dir = tempDir('held-out-plan');
  fs.writeFileSync(path.join(dir, 'plan.json'), JSON.stringify({ format: 'dsmoe-plan', version: 1, source }));
  fs.copyFileSync(path.join(tokenizerFrom, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return dir;
}

/** The message of the UserError `run` throws; it must be one line. */
function userError(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('expected a UserError');
}

/** The same tokenizer, putting `bosId` before prompts (as an imported Llama tokenizer does). */
function withBos(tokenizer: Tokenizer, bosId: number): Tokenizer {
  return Object.assign(Object.create(tokenizer) as Tokenizer, { bosId });
}

/**
 * The BOS rule checked window by window against its definition: every window starts with the BOS, each later input
 * is the target before it, and the targets of all windows in order are the passages' tokens, each predicted once.
 */
function expectBosWindows(groups: Windows[], bos: number, predicted: number[]): void {
  const targets: number[] = [];
  for (const { inputs, targets: want, count } of groups) {
    const T = inputs.length / count;
    for (let w = 0; w < count; w++) {
      expect(inputs[w * T]).toBe(bos);
      for (let t = 1; t < T; t++) expect(inputs[w * T + t]).toBe(want[w * T + t - 1]);
      targets.push(...want.subarray(w * T, (w + 1) * T));
    }
  }
  expect(targets).toEqual(predicted);
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const bothFlags = escape('pass --recipe FILE (the recipe it was trained with) or --text FILE');

describe('the validation split', () => {
  const { dense, recipe } = trainedFolder();
  const split = heldOutSplit(dense);
  const trainer = prepareData(loadRecipe(recipe), { tokenizer: loadTokenizer(dense) }).dataset; // the trainer's own split

  test('is the trainer’s: same runs, same windows, same bytes per token', () => {
    expect(split.kind).toBe('validation');
    expect(split.file).toBe(recipe);
    expect(split.source).toBe(`validation split of ${recipe} (seed 1234)`);
    expect(split.runs).toEqual(trainer.validationRuns.map((run) => trainer.tokens.subarray(run.start, run.end)));
    const [windows, ...rest] = split.windows(32); // default: the recipe's eval_tokens
    expect(rest).toEqual([]);
    expect(windows).toEqual(trainer.validationWindows(512, 32));
    expect(split.bytesPerToken).toBe(trainer.validationBytesPerToken);
    expect(split.tokenBytes(65)).toBe(1);
    expect(split.tokenBytes(split.tokenizer.eosId)).toBe(1);
  });

  test('eval (dense and sparse), the report and calibration see the same tokens', () => {
    const plan = planFolder({ dir: dense, model_sha256: null, model_type: 'qwen2_moe' }, dense);
    const T = 32;
    const evalDense = heldOutSplit(dense).windows(T)[0]; // dsmoe eval <dense>
    const evalSparse = heldOutSplit(plan).windows(T)[0]; // dsmoe eval <plan>: through plan.json source.dir
    const report = windowSequences(heldOutSplit(dense, { recipe }).windows(T, 512)); // dsmoe report --recipe
    const calibration = heldOutSplit(dense, { tokenizer: loadTokenizer(dense) }).calibrationWindows(T, 512); // dsmoe convert
    expect(evalSparse).toEqual(evalDense);
    expect(report).toHaveLength(evalDense.count);
    expect(calibration).toHaveLength(evalDense.count);
    report.forEach((sequence, i) => {
      const inputs = Array.from(evalDense.inputs.subarray(i * T, (i + 1) * T));
      expect(Array.from(sequence)).toEqual([...inputs, evalDense.targets[(i + 1) * T - 1]]); // T + 1 tokens, T predictions
      expect(calibration[i]).toEqual(inputs); // calibration windows start where the scored ones do
    });
  });

  test('with a tokenizer that puts a BOS before prompts: the same window shapes, the BOS first, every token predicted', () => {
    const bos = split.tokenizer.eosId; // any id; the byte tokenizer given a BOS as an imported one has it
    const bosSplit = heldOutSplit(dense, { tokenizer: withBos(loadTokenizer(dense), bos) });
    expect(bosSplit.runs).toEqual(split.runs); // the text is the same; only the windows change
    const T = 32;
    const groups = bosSplit.windows(T, 128);
    expect(groups).toHaveLength(1);
    expect(groups[0].count).toBe(split.windows(T, 128)[0].count); // 4 windows of 32 predictions, as without the BOS
    // a passage's windows predict its tokens from its first on, in order: BOS + 31 inputs, 32 targets
    const predicted: number[] = [];
    for (const run of split.runs) for (let start = 0; start + T <= run.length && predicted.length < 128; start += T) predicted.push(...run.subarray(start, start + T));
    expectBosWindows(groups, bos, predicted);
    // calibration: BOS + the next 31 tokens, so every token of a passage is in one window
    const calibration = bosSplit.calibrationWindows(T, 128);
    expect(calibration).toHaveLength(4);
    calibration.forEach((window, i) => expect(window).toEqual([bos, ...split.runs[0].subarray(i * (T - 1), (i + 1) * (T - 1))]));
    // a passage just long enough: `context` text tokens fill a window (the BOS stands in for the context + 1st)
    const longest = Math.max(...split.runs.map((run) => run.length));
    expect(bosSplit.windows(longest, longest)[0].count).toBe(1);
    expect(userError(() => bosSplit.windows(longest + 1))).toMatch(new RegExp(`no passage holds ${longest + 1} tokens \\(the longest has ${longest}\\); lower the context$`));
    expect(userError(() => bosSplit.windows(T, T - 1))).toMatch(/31 tokens to score fill no window of 32 predictions/);
  });

  test('found by the recorded name in ./recipes when the recorded file is gone', () => {
    const { dense: moved, recipe: file, root } = trainedFolder();
    recordRecipe(moved, file, { recipe_file: '/nonexistent/held-out-test.yaml' });
    const cwd = process.cwd();
    process.chdir(root); // the working directory's recipes/ is searched before the package's
    try {
      expect(heldOutSplit(moved).file).toBe(path.join(fs.realpathSync(root), 'recipes', 'held-out-test.yaml'));
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('one-line errors naming the file and the flag, never a fallback', () => {
  test('no recipe recorded', () => {
    const dir = tempDir('held-out-bare');
    writeDenseFolder(dir, tinyConfig, weights); // config.json has a dsmoe block without a recipe
    const message = userError(() => heldOutSplit(dir));
    expect(message).toMatch(new RegExp(`^${escape(path.join(dir, 'config.json'))}: no training recipe recorded .*${bothFlags}$`));
  });

  test('recipe not found: names config.json and every place searched', () => {
    const { dense } = trainedFolder();
    recordRecipe(dense, writeTestRecipe(tempDir('held-out-other'), 'held-out-test'), { recipe: 'no-such-recipe', recipe_file: undefined });
    const message = userError(() => heldOutSplit(dense));
    expect(message).toMatch(new RegExp(`^${escape(path.join(dense, 'config.json'))}: training recipe "no-such-recipe" not found`));
    expect(message).toContain(`${path.resolve('recipes')}/no-such-recipe.{yaml,yml,json}`);
    expect(message.split('no-such-recipe.{yaml').length - 1).toBe(1); // jest runs in the package: one folder, named once
    expect(message).toMatch(new RegExp(`${bothFlags}$`));
  });

  test('a recipe changed since training: hash mismatch naming the recipe and the checkpoint', () => {
    const { dense, recipe } = trainedFolder();
    const changed = YAML.parse(fs.readFileSync(recipe, 'utf8'));
    changed.data.validation_fraction = 0.1; // a different split
    fs.writeFileSync(recipe, YAML.stringify(changed));
    const message = userError(() => heldOutSplit(dense));
    expect(message).toMatch(new RegExp(`^${escape(recipe)}: not the recipe ${escape(dense)} was trained with .*${escape(path.join(dense, 'config.json'))}.*${bothFlags}$`));
    // --recipe is checked the same way
    const other = writeTestRecipe(tempDir('held-out-other'), 'held-out-test');
    fs.writeFileSync(other, fs.readFileSync(recipe));
    expect(userError(() => heldOutSplit(dense, { recipe: other }))).toMatch(new RegExp(`^${escape(other)}: not the recipe`));
  });

  test('a recorded name without a hash cannot be checked', () => {
    const { dense, recipe } = trainedFolder();
    recordRecipe(dense, recipe, { recipe_hash: undefined });
    expect(userError(() => heldOutSplit(dense))).toMatch(new RegExp(`no dsmoe.recipe_hash, so ${escape(recipe)} cannot be checked.*${bothFlags}$`));
    expect(heldOutSplit(dense, { recipe }).file).toBe(recipe); // --recipe vouches for it
  });

  test('missing corpus: names the corpus file and --text', () => {
    const { dense, recipe } = trainedFolder();
    const corpus = path.join(path.dirname(recipe), 'corpus.txt');
    fs.rmSync(corpus);
    expect(userError(() => heldOutSplit(dense))).toMatch(new RegExp(`^${escape(recipe)}: data.corpus: no such file ${escape(corpus)}; ${bothFlags}$`));
    expect(userError(() => heldOutSplit(dense, { recipe }))).toMatch(/no such file .*corpus\.txt; pass --text FILE to score a text instead$/);
  });

  test('random-init plan: no training text, --text FILE', () => {
    const { dense } = trainedFolder();
    const plan = planFolder({ dir: null, model_sha256: null, model_type: 'qwen2_moe', random_init: { seed: 1, std: 0.02 } }, dense);
    expect(userError(() => heldOutSplit(plan))).toMatch(new RegExp(`^${escape(path.join(plan, 'plan.json'))}: a random-init plan .*pass --text FILE`));
  });

  test('a plan whose source folder is gone', () => {
    const { dense } = trainedFolder();
    const plan = planFolder({ dir: path.join(dense, 'moved-away'), model_sha256: null, model_type: 'qwen2_moe' }, dense);
    expect(userError(() => heldOutSplit(plan))).toMatch(new RegExp(`moved-away/config.json: cannot read \\(ENOENT\\); ${bothFlags}$`));
  });

  test('text unreadable or too short; --recipe and --text together', () => {
    const { dense, recipe } = trainedFolder();
    expect(userError(() => heldOutSplit(dense, { text: '/nonexistent/notes.txt' }))).toBe('--text /nonexistent/notes.txt: cannot read (ENOENT)');
    const short = path.join(tempDir('held-out-text'), 'short.txt');
    fs.writeFileSync(short, 'a');
    expect(userError(() => heldOutSplit(dense, { text: short }))).toBe(`--text ${short}: needs at least 2 tokens to score, got 1`);
    expect(userError(() => heldOutSplit(dense, { recipe, text: short }))).toMatch(/^--recipe and --text exclude each other/);
  });

  test('too little held-out text for the windows asked for', () => {
    const { dense } = trainedFolder();
    const split = heldOutSplit(dense);
    const longest = Math.max(...split.runs.map((run) => run.length));
    expect(userError(() => split.windows(longest))).toMatch(new RegExp(`no passage holds ${longest + 1} tokens \\(the longest has ${longest}\\); lower the context$`));
    expect(userError(() => split.calibrationWindows(longest + 1, 1e6))).toMatch(/lower --calib-context$/);
  });
});

describe('--text', () => {
  const text = 'In the beginning God created the heaven and the earth. '.repeat(4); // 220 bytes
  const file = path.join(tempDir('held-out-text'), 'genesis.txt');
  fs.writeFileSync(file, text);

  test('bypasses the recipe, even one that cannot be found', () => {
    const { dense } = trainedFolder();
    recordRecipe(dense, writeTestRecipe(tempDir('held-out-other'), 'held-out-test'), { recipe: 'no-such-recipe', recipe_file: undefined });
    const split: HeldOutSplit = heldOutSplit(dense, { text: file });
    expect(split).toMatchObject({ kind: 'text', source: file, file, recipe: null });
    const tokens = split.tokenizer.encode(text);
    expect(split.runs).toEqual([Int32Array.from(tokens)]);
    expect(split.bytesPerToken).toBe(220 / tokens.length);
    expect(split.windows(64)).toEqual(textWindows(tokens, 64)); // as `eval --text` scores it (SPEC §7)
    expect(split.calibrationWindows(64, 1e6)).toEqual(cutWindows([tokens], 64, 1e6));
  });

  test('an imported tokenizer with a BOS (the Llama fixture): each window is <s> + the next context − 1 tokens', () => {
    const { dense } = trainedFolder();
    const tokenizer = loadAnyTokenizer(path.join(__dirname, '..', 'fixtures', 'tokenizers', 'llama_bpe_legacy'));
    expect(tokenizer.bosId).toBe(1);
    const split = heldOutSplit(dense, { text: file, tokenizer });
    const tokens = tokenizer.encode(text);
    expect(split.runs).toEqual([Int32Array.from(tokens)]); // the text's own ids: no BOS in the text
    const context = 16;
    const groups = split.windows(context);
    expectBosWindows(groups, 1, tokens); // every text token predicted once
    const full = Math.floor(tokens.length / (context - 1));
    expect(groups.map((g) => g.inputs.length / g.count)).toEqual(tokens.length % (context - 1) ? [context - 1, tokens.length % (context - 1)] : [context - 1]);
    expect(groups[0].count).toBe(full);
    // calibration windows are the full scoring windows, token for token
    expect(split.calibrationWindows(context, 1e6)).toEqual(windowSequences([groups[0]]).map((w) => Array.from(w)));
    // capped in predictions as without a BOS: whole windows only, the shorter last one when it fits
    expect(split.windows(context, 2 * (context - 1))).toEqual([bosWindows([tokens], 1, context - 1, 2 * (context - 1), true)[0]]);
    expect(split.windows(context, 2 * (context - 1))[0].count).toBe(2);
  });

  test('works for a random-init plan', () => {
    const { dense } = trainedFolder();
    const plan = planFolder({ dir: null, model_sha256: null, model_type: 'qwen2_moe' }, dense);
    expect(heldOutSplit(plan, { text: file }).runs[0]).toHaveLength(220);
  });
});

describe('window cutters', () => {
  test('textWindows: full windows of context tokens, then the rest; capped in predictions', () => {
    const tokens = Array.from({ length: 10 }, (_, i) => i);
    const all = textWindows(tokens, 4);
    expect(all.map((g) => g.count)).toEqual([2, 1]);
    expect(Array.from(all[0].inputs)).toEqual([0, 1, 2, 4, 5, 6]);
    expect(Array.from(all[0].targets)).toEqual([1, 2, 3, 5, 6, 7]);
    expect(Array.from(all[1].inputs)).toEqual([8]); // the shorter last window: 2 tokens, 1 prediction
    expect(textWindows(tokens, 4, 7)).toEqual(all); // 3 + 3 + 1 predictions fit
    expect(textWindows(tokens, 4, 6)).toEqual([all[0]]);
    expect(textWindows(tokens, 4, 5).map((g) => g.count)).toEqual([1]);
    expect(textWindows(tokens.slice(0, 9), 4).map((g) => g.count)).toEqual([2]); // a 1-token rest predicts nothing
  });

  test('cutWindows: non-overlapping windows of context tokens up to the budget', () => {
    expect(cutWindows([[1, 2, 3, 4, 5], [6, 7, 8]], 2, 100)).toEqual([[1, 2], [3, 4], [6, 7]]);
    expect(cutWindows([[1, 2, 3, 4, 5], [6, 7, 8]], 2, 4)).toEqual([[1, 2], [3, 4]]);
  });

  test('bosWindows: BOS first, then the tokens after the last window\'s; capped in predictions', () => {
    const tokens = Array.from({ length: 10 }, (_, i) => 10 + i);
    const all = bosWindows([tokens], 99, 3, Infinity, true); // windows of 4 tokens: BOS + 3, 3 predictions
    expect(all.map((g) => g.count)).toEqual([3, 1]);
    expect(Array.from(all[0].inputs)).toEqual([99, 10, 11, 99, 13, 14, 99, 16, 17]);
    expect(Array.from(all[0].targets)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18]);
    expect(Array.from(all[1].inputs)).toEqual([99]); // the shorter last window: BOS + 1 token, 1 prediction
    expect(Array.from(all[1].targets)).toEqual([19]);
    expect(bosWindows([tokens], 99, 3, 10, true)).toEqual(all); // 3 + 3 + 3 + 1 predictions fit
    expect(bosWindows([tokens], 99, 3, 9, true)).toEqual([all[0]]);
    expect(bosWindows([tokens], 99, 3, 8, true).map((g) => g.count)).toEqual([2]);
    expect(bosWindows([tokens.slice(0, 9)], 99, 3, Infinity, true).map((g) => g.count)).toEqual([3]); // no rest
    // several passages, full windows only (the validation split): each passage from its first token
    const runs = [[1, 2, 3, 4, 5], [6, 7, 8]];
    const [group, ...none] = bosWindows(runs, 0, 2, 100, false);
    expect(none).toEqual([]);
    expect(Array.from(group.inputs)).toEqual([0, 1, 0, 3, 0, 6]);
    expect(Array.from(group.targets)).toEqual([1, 2, 3, 4, 6, 7]);
    expect(bosWindows(runs, 0, 2, 5, false)[0].count).toBe(2);
    expect(bosWindows(runs, 0, 2, 1, false)).toEqual([]);
  });

  test('cutWindows with a BOS: the BOS and the next context − 1 tokens', () => {
    expect(cutWindows([[1, 2, 3, 4, 5], [6, 7, 8]], 3, 100, 0)).toEqual([[0, 1, 2], [0, 3, 4], [0, 6, 7]]);
    expect(cutWindows([[1, 2, 3, 4, 5], [6, 7, 8]], 3, 6, 0)).toEqual([[0, 1, 2], [0, 3, 4]]); // context tokens each, BOS included
  });

  test('windowSequences: each window as its inputs and last target', () => {
    const groups = textWindows([5, 6, 7, 8, 9], 3);
    expect(windowSequences(groups).map((w) => Array.from(w))).toEqual([[5, 6, 7], [8, 9]]);
  });
});
