/**
 * The prepared data folder: its token ids and batch order are the tfjs trainer's own (prepareData +
 * TokenDataset.trainBatch, computed independently here), and a folder from another recipe, a cut-off file or too
 * short a batch order is refused with one line.
 */
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { prepareData, readBatchStarts, readPreparedData, writePreparedData } from '../../src/data';
import { UserError } from '../../src/errors';
import { loadRecipe } from '../../src/recipe';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';
import { writeTestRecipe } from '../helpers/recipe_fixtures';

afterAll(removeTempDirs);

function testRecipe(dir: string, train: Record<string, number> = {}) {
  const file = writeTestRecipe(dir, 'prepared-test');
  const yaml = YAML.parse(fs.readFileSync(file, 'utf8'));
  yaml.train = { ...yaml.train, batch_size: 4, grad_accum: 3, max_steps: 5, warmup_steps: 2, ...train };
  fs.writeFileSync(file, YAML.stringify(yaml));
  return loadRecipe(file);
}

describe('dsmoe prepare', () => {
  const root = tempDir('prepared');
  const recipe = testRecipe(root);
  const out = path.join(root, 'prepared');
  const written = writePreparedData(out, recipe);
  const reference = prepareData(recipe); // the trainer's path, without the folder

  test('tokens.bin holds the trainer token stream; batches.bin its batch order, row = step · grad_accum + micro-batch', () => {
    const tokens = new Int32Array(new Uint8Array(fs.readFileSync(path.join(out, 'tokens.bin'))).buffer);
    expect(Array.from(tokens)).toEqual(Array.from(reference.dataset.tokens));
    expect(written.meta.batches.shape).toEqual([5 * 3, 4]);
    const T = recipe.data.seq_len;
    for (let index = 0; index < 15; index++) {
      const { inputs, targets } = reference.dataset.trainBatch(index, 4, T);
      readBatchStarts(written, index).forEach((start, b) => {
        expect(Array.from(tokens.subarray(start, start + T))).toEqual(Array.from(inputs.subarray(b * T, (b + 1) * T)));
        expect(Array.from(tokens.subarray(start + 1, start + T + 1))).toEqual(Array.from(targets.subarray(b * T, (b + 1) * T)));
      });
    }
  });

  test('read back, the dataset gives the same batches, held-out windows and bytes per token as the trainer', () => {
    const read = readPreparedData(out, recipe);
    const T = recipe.data.seq_len;
    for (const index of [0, 7, 14, 1000]) expect(read.dataset.trainBatch(index, 4, T)).toEqual(reference.dataset.trainBatch(index, 4, T));
    const windows = reference.dataset.validationWindows(recipe.train.eval_tokens, T);
    expect(read.dataset.validationWindows(recipe.train.eval_tokens, T)).toEqual(windows);
    expect(written.meta.validation.starts.length).toBe(windows.count);
    written.meta.validation.starts.forEach((start, i) => expect(reference.dataset.tokens[start]).toBe(windows.inputs[i * T]));
    expect(read.meta.validation.bytes_per_token).toBeCloseTo(reference.dataset.validationBytesPerToken, 12);
    expect(read.tokenizer.vocabSize).toBe(reference.tokenizer.vocabSize);
  });

  test('another recipe, too few steps or a cut-off file: one-line errors', () => {
    const other = testRecipe(tempDir('prepared-other'), { lr: 1e-3 });
    expect(() => readPreparedData(out, other)).toThrow(UserError);
    expect(() => readPreparedData(out, other)).toThrow(/different|another|hash/);
    expect(() => readPreparedData(out, recipe, { steps: 6 })).toThrow(/covers 5 steps, the run needs 6/);
    const copy = path.join(root, 'cut');
    fs.cpSync(out, copy, { recursive: true });
    fs.truncateSync(path.join(copy, 'tokens.bin'), 100);
    expect(() => readPreparedData(copy, recipe)).toThrow(/tokens\.bin: 100 bytes, expected/);
    expect(() => readPreparedData(path.join(root, 'nothing'), recipe)).toThrow(/not a prepared data folder/);
  });
});
