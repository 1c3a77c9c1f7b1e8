/**
 * `dsmoe eval` of a dense folder (tfjs) and of its plan (native runtime) on the same held-out split: a k = E f32
 * plan must give the dense model's loss on the same windows. Needs the addon (npm run build:native).
 */
import * as fs from 'fs';
import * as path from 'path';
import { convertCommand } from '../../../src/cli/commands/convert';
import { evalCommand } from '../../../src/cli/commands/eval';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../../helpers/dense_fixtures';
import { recordRecipe, writeTestRecipe } from '../../helpers/recipe_fixtures';
import { loadNative } from '../../../src/runtime/native';
import { runCommand as run } from '../../helpers/run_command';

afterAll(removeTempDirs);

/** The --json line (jest's console also writes here when tfjs warns on first use). */
async function evaluate(dir: string, ...flags: string[]) {
  const stdout = await run(evalCommand as never, ['eval', dir, '--json', '--backend', 'cpu', '--context', '32', ...flags]);
  return JSON.parse(stdout.split('\n').filter((line) => line.startsWith('{')).pop()!);
}

describe('dsmoe eval', () => {
  const root = tempDir('eval');
  const recipe = writeTestRecipe(root, 'eval-test');
  const dense = path.join(root, 'dense');
  writeDenseFolder(dense, tinyConfig, randomDenseWeights(tinyConfig, 31, 0.1));
  recordRecipe(dense, recipe);
  const sparse = path.join(root, 'sparse');

  beforeAll(async () => {
    await run(convertCommand as never, ['convert', dense, '--out', sparse, '--strategy', 'topk', '--k', String(tinyConfig.num_experts), '--calib-tokens', '0', '--quiet']);
  });

  test('dense and sparse (k = E) score the same held-out windows to the same loss', async () => {
    const denseResult = await evaluate(dense);
    const sparseResult = await evaluate(sparse);
    const source = `validation split of ${recipe} (seed 1234)`;
    expect(denseResult).toMatchObject({ mode: 'dense', source, tokens: 512 }); // eval_tokens 512 in windows of 32
    expect(sparseResult).toMatchObject({ mode: 'sparse:plan', source, tokens: 512 });
    expect(Math.abs(sparseResult.loss - denseResult.loss)).toBeLessThan(1e-5 * denseResult.loss);
    expect(sparseResult.bits_per_byte).toBeCloseTo(denseResult.bits_per_byte, 5);
  });

  test('--text scores a file instead; --recipe names the training recipe', async () => {
    const text = path.join(root, 'genesis.txt');
    fs.writeFileSync(text, 'In the beginning God created the heaven and the earth. '.repeat(4)); // 220 tokens
    const denseResult = await evaluate(dense, '--text', text);
    const sparseResult = await evaluate(sparse, '--text', text);
    expect(denseResult).toMatchObject({ source: text, tokens: 220 - 7 }); // 6 windows of 32 and one of 28: 31 · 6 + 27
    expect(sparseResult).toMatchObject({ source: text, tokens: 220 - 7 });
    expect(Math.abs(sparseResult.loss - denseResult.loss)).toBeLessThan(1e-5 * denseResult.loss);
    expect((await evaluate(sparse, '--recipe', recipe)).source).toBe(`validation split of ${recipe} (seed 1234)`);
  });

  test('--device: auto runs where it can (the same result as --device cpu without a GPU); cuda without one is a one-line error', async () => {
    const cpu = await evaluate(sparse, '--device', 'cpu');
    expect(cpu.device).toBe('cpu');
    const auto = await evaluate(sparse, '--device', 'auto');
    const { cuda } = loadNative().cpuInfo();
    if (cuda) {
      expect(auto.device).toMatch(/^cuda \(/);
      return; // the CUDA-against-CPU comparison is test/runtime/cuda_model.test.ts
    }
    expect(auto).toEqual(cpu);
    await expect(evaluate(sparse, '--device', 'cuda')).rejects.toThrow(/^--device cuda: /);
    await expect(evaluate(sparse, '--device', 'gpu')).rejects.toThrow(/device/);
  });

  test('--residency: read and populate score exactly as the default mapping; a bad value is a one-line error', async () => {
    const mapped = await evaluate(sparse, '--device', 'cpu');
    for (const residency of ['read', 'populate']) {
      expect(await evaluate(sparse, '--device', 'cpu', '--residency', residency)).toEqual(mapped);
    }
    await expect(evaluate(sparse, '--residency', 'no-mmap')).rejects.toThrow(/^--residency must be one of mmap, populate, mlock, read, got "no-mmap"$/);
  });

  test('a recipe changed since training is an error, not a different split', async () => {
    const changed = path.join(root, 'recipes', 'changed.yaml');
    fs.writeFileSync(changed, fs.readFileSync(recipe, 'utf8').replace('seed: 1234', 'seed: 99'));
    await expect(evaluate(dense, '--recipe', changed)).rejects.toThrow(`${changed}: not the recipe ${dense} was trained with`);
    await expect(evaluate(sparse, '--recipe', changed)).rejects.toThrow(`${changed}: not the recipe ${dense} was trained with`);
  });
});
