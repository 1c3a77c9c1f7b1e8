import * as fs from 'fs';
import * as path from 'path';
import yargs from 'yargs';
import { convertCommand } from '../../../src/cli/commands/convert';
import { layerOps } from '../../../src/plan/plan_format';
import { readPlan } from '../../../src/plan/read_plan';
import { planWeights } from '../../../src/plan/plan_reference';
import { dequantize, quantize } from '../../../src/plan/quantize';
import { denseNames } from '../../../src/plan/tensor_table';
import { packageRoot } from '../../../src/data';
import { loadRecipe, recipeHash } from '../../../src/recipe';
import { randomDenseWeights, tempDir, tinyConfig, writeDenseFolder, removeTempDirs } from '../../helpers/dense_fixtures';

afterAll(removeTempDirs);

async function runConvert(argv: string[]): Promise<string> {
  let stdout = '';
  const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  try {
    await yargs(['convert', ...argv]).command(convertCommand).strict().fail((message, error) => {
      throw error ?? new Error(message);
    }).parseAsync();
  } finally {
    write.mockRestore();
  }
  return stdout;
}

describe('dsmoe convert', () => {
  const dense = tempDir('cli-dense');
  writeDenseFolder(dense, tinyConfig, randomDenseWeights(tinyConfig, 21));

  test('by default on a text file: picks the plan, writes the folder with the choice, prints the per-layer table', async () => {
    const text = path.join(tempDir('cli-text'), 'calib.txt');
    fs.writeFileSync(text, 'In the beginning God created the heaven and the earth. '.repeat(20));
    const out = tempDir('cli-out');
    const stdout = await runConvert([dense, '--out', out, '--calib-text', text, '--calib-tokens', '256', '--calib-context', '32', '--quiet']);
    expect(stdout).toMatch(/^layer +mode +k +thr-mean/);
    expect(stdout).toMatch(/calibration loss \(nats\/token, 256 tokens\): dense \d/);
    const { plan } = readPlan(out);
    const choice = plan.choice!;
    expect(choice.max_loss_increase).toBe(0.005);
    expect(plan.strategy.name).toBe(choice.chosen.strategy);
    expect(choice.chosen.loss).toBeLessThanOrEqual(choice.loss_bound);
    expect(choice.sweep.length).toBeGreaterThanOrEqual(tinyConfig.num_experts + 10); // every k, every default ε
    expect(plan.dtype).toBe('f32');
    expect(plan.calibration!.tokens).toBe(256);
    for (const file of ['plan.json', 'weights.safetensors', 'calibration.json', 'tokenizer.json', 'tokenizer_config.json']) {
      expect(fs.existsSync(path.join(out, file))).toBe(true);
    }
  });

  test('--epsilon alone forces threshold-topk (no sweep); without calibration tokens the choice is an error', async () => {
    const text = path.join(tempDir('cli-text'), 'calib.txt');
    fs.writeFileSync(text, 'In the beginning God created the heaven and the earth. '.repeat(20));
    const out = tempDir('cli-out');
    await runConvert([dense, '--out', out, '--epsilon', '0.3', '--calib-text', text, '--calib-tokens', '128', '--calib-context', '32', '--quiet']);
    const { plan } = readPlan(out);
    expect(plan.strategy).toMatchObject({ name: 'threshold-topk', epsilon: 0.3 });
    expect(plan.choice).toBeUndefined();
    await expect(runConvert([dense, '--out', tempDir('cli-out'), '--calib-tokens', '0', '--quiet'])).rejects.toThrow(/choosing the plan needs calibration tokens/);
  });

  test('topk on the validation split of --recipe, bf16', async () => {
    const out = tempDir('cli-out');
    const recipe = path.join(packageRoot(), 'recipes', 'tiny.yaml');
    await runConvert([dense, '--out', out, '--strategy', 'topk', '--k', '2', '--dtype', 'bf16', '--calib-tokens', '128', '--calib-context', '64', '--recipe', recipe, '--quiet']);
    const { plan } = readPlan(out);
    expect(layerOps(plan.layers[0]).select).toMatchObject({ mode: 'topk', k: 2 });
    const calibration = JSON.parse(fs.readFileSync(path.join(out, 'calibration.json'), 'utf8'));
    expect(calibration.source).toMatch(/validation split of .*recipes\/tiny\.yaml \(seed 1234\)/);
    expect(calibration.windows).toBe(2);
  });

  test('no recorded recipe and neither --recipe nor --text: an error, not the default corpus', async () => {
    const out = tempDir('cli-out');
    await expect(runConvert([dense, '--out', out, '--strategy', 'topk', '--calib-tokens', '128', '--quiet'])).rejects.toThrow(
      new RegExp(`^${path.join(dense, 'config.json')}: no training recipe recorded .*pass --recipe FILE \\(the recipe it was trained with\\) or --text FILE$`),
    );
    expect(fs.existsSync(path.join(out, 'plan.json'))).toBe(false);
  });

  test('the held-out split of the recipe named in config.json', async () => {
    const named = tempDir('cli-dense');
    writeDenseFolder(named, tinyConfig, randomDenseWeights(tinyConfig, 22));
    const configPath = path.join(named, 'config.json');
    const hf = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    const hash = recipeHash(loadRecipe(path.join(packageRoot(), 'recipes', 'tiny.yaml'))); // as the trainer records it
    fs.writeFileSync(configPath, JSON.stringify({ ...hf, dsmoe: { recipe: 'tiny', recipe_hash: hash, seq_len: 32 } }));
    const out = tempDir('cli-out');
    await runConvert([named, '--out', out, '--strategy', 'threshold', '--calib-tokens', '64', '--quiet']);
    const calibration = JSON.parse(fs.readFileSync(path.join(out, 'calibration.json'), 'utf8'));
    expect(calibration.source).toMatch(/validation split of .*recipes\/tiny\.yaml \(seed 1234\)/);
    expect(calibration.context).toBe(32);
    expect(calibration.windows).toBe(2);
  });

  test('topk without calibration writes a plan with no calibration report', async () => {
    const out = tempDir('cli-out');
    const stdout = await runConvert([dense, '--out', out, '--strategy', 'topk', '--k', '3', '--calib-tokens', '0', '--quiet']);
    const { plan } = readPlan(out);
    expect(plan.calibration).toBeNull();
    expect(plan.strategy.calib_tokens).toBe(0);
    expect(fs.existsSync(path.join(out, 'calibration.json'))).toBe(false);
    expect(stdout).not.toMatch(/calibration loss/);
  });

  test('--text is the flag, --calib-text its alias', async () => {
    const text = path.join(tempDir('cli-text'), 'calib.txt');
    fs.writeFileSync(text, 'And God said, Let there be light: and there was light. '.repeat(20));
    const calibrations = [];
    for (const flag of ['--text', '--calib-text']) {
      const out = tempDir('cli-out');
      await runConvert([dense, '--out', out, '--strategy', 'topk', '--k', '2', flag, text, '--calib-tokens', '128', '--calib-context', '32', '--quiet']);
      calibrations.push(JSON.parse(fs.readFileSync(path.join(out, 'calibration.json'), 'utf8')));
    }
    expect(calibrations[0]).toEqual(calibrations[1]);
    expect(calibrations[0]).toMatchObject({ source: text, windows: 4 });
  });

  test('--expert-dtype q4 --attn-dtype q8: GGUF blocks of the dense weights, read back by the plan reference', async () => {
    const blockConfig = { ...tinyConfig, hidden_size: 32, moe_intermediate_size: 32 };
    const denseDir = tempDir('cli-dense-blocks');
    const weights = randomDenseWeights(blockConfig, 23);
    writeDenseFolder(denseDir, blockConfig, weights);
    const out = tempDir('cli-out');
    await runConvert([denseDir, '--out', out, '--strategy', 'topk', '--k', '2', '--calib-tokens', '0', '--dtype', 'bf16', '--expert-dtype', 'q4', '--attn-dtype', 'q8', '--quiet']);
    const loaded = readPlan(out);
    expect(loaded.plan.dtype).toBe('bf16');
    expect(loaded.plan.dtypes).toEqual({ experts: 'q4_0', attention: 'q8_0' });
    const reference = planWeights(loaded);
    // Blocks never straddle rows, so each dense part quantized alone gives the packed tensor's blocks.
    const roundTrip = (name: string, type: 'Q8_0' | 'Q4_0') => {
      const values = weights.get(name)!;
      return dequantize(quantize(values, type), type, values.length);
    };
    expect(reference.get(denseNames.expertUp(1, 3))).toEqual(roundTrip(denseNames.expertUp(1, 3), 'Q4_0'));
    expect(reference.get(denseNames.expertDown(0, 2))).toEqual(roundTrip(denseNames.expertDown(0, 2), 'Q4_0'));
    expect(reference.get(denseNames.k(1))).toEqual(roundTrip(denseNames.k(1), 'Q8_0'));
    expect(reference.get(denseNames.router(1))).toEqual(weights.get(denseNames.router(1))); // routers stay f32
    // bytes per token: q4 experts and q8 attention read less than bf16 everywhere
    const bf16Out = tempDir('cli-out');
    await runConvert([denseDir, '--out', bf16Out, '--strategy', 'topk', '--k', '2', '--calib-tokens', '0', '--dtype', 'bf16', '--quiet']);
    expect(loaded.plan.cost.active_weight_bytes_per_token).toBeLessThan(readPlan(bf16Out).plan.cost.active_weight_bytes_per_token);
  });

  test('--expert-dtype q3 / q2: affine blocks of 64 of the dense weights, read back by the plan reference', async () => {
    const blockConfig = { ...tinyConfig, hidden_size: 64, moe_intermediate_size: 64 };
    const denseDir = tempDir('cli-dense-blocks64');
    const weights = randomDenseWeights(blockConfig, 29);
    writeDenseFolder(denseDir, blockConfig, weights);
    const roundTrip = (name: string, type: 'Q3_A' | 'Q2_A') => {
      const values = weights.get(name)!;
      return dequantize(quantize(values, type), type, values.length);
    };
    const out = tempDir('cli-out');
    await runConvert([denseDir, '--out', out, '--strategy', 'topk', '--k', '2', '--calib-tokens', '0', '--expert-dtype', 'q3', '--attn-dtype', 'q2', '--quiet']);
    const loaded = readPlan(out);
    expect(loaded.plan.dtypes).toEqual({ experts: 'q3_a', attention: 'q2_a' });
    const reference = planWeights(loaded);
    expect(reference.get(denseNames.expertGate(1, 3))).toEqual(roundTrip(denseNames.expertGate(1, 3), 'Q3_A'));
    expect(reference.get(denseNames.expertDown(0, 2))).toEqual(roundTrip(denseNames.expertDown(0, 2), 'Q3_A'));
    expect(reference.get(denseNames.o(1))).toEqual(roundTrip(denseNames.o(1), 'Q2_A'));
    const q2 = tempDir('cli-out');
    await runConvert([denseDir, '--out', q2, '--strategy', 'topk', '--k', '2', '--calib-tokens', '0', '--expert-dtype', 'q2', '--quiet']);
    expect(readPlan(q2).plan.dtypes).toEqual({ experts: 'q2_a', attention: 'f32' });
    expect(reference.get(denseNames.expertUp(1, 0))).not.toEqual(planWeights(readPlan(q2)).get(denseNames.expertUp(1, 0)));
    // 32-wide rows are whole Q4_0 blocks but not Q3_A ones
    const narrow = tempDir('cli-dense-blocks32');
    writeDenseFolder(narrow, { ...tinyConfig, hidden_size: 32, moe_intermediate_size: 32 }, randomDenseWeights({ ...tinyConfig, hidden_size: 32, moe_intermediate_size: 32 }, 3));
    await expect(runConvert([narrow, '--out', tempDir('cli-out'), '--strategy', 'topk', '--k', '2', '--calib-tokens', '0', '--expert-dtype', 'q3'])).rejects.toThrow(
      /^--expert-dtype q3: experts at q3_a: blocks of 64 weights need rows of a multiple of 64, but config.hidden_size is 32 \(.*config\.json\)$/,
    );
  });

  test('a quantized class whose rows are not whole blocks of 32 is one line naming the flag and the size', async () => {
    await expect(runConvert([dense, '--out', tempDir('cli-out'), '--strategy', 'topk', '--k', '2', '--calib-tokens', '0', '--expert-dtype', 'q4'])).rejects.toThrow(
      /^--expert-dtype q4: experts at q4_0: blocks of 32 weights need rows of a multiple of 32, but config.hidden_size is 8 \(.*config\.json\)$/,
    );
  });

  test('MoA: a quantized --attn-dtype must fill an attention expert\'s W_o rows (N_h × head_dim) with whole blocks', async () => {
    // d 64 and I 64 fill Q3_A blocks; 2 attention experts × 2 heads of head dim 16 make W_o rows of 32 weights.
    const moa = { ...tinyConfig, hidden_size: 64, moe_intermediate_size: 64, num_attention_heads: 4, num_key_value_heads: 2, attention_experts: 2, heads_per_attention_expert: 2 };
    const dir = tempDir('cli-dense-moa');
    writeDenseFolder(dir, moa, randomDenseWeights(moa, 4));
    const args = (flag: string) => [dir, '--out', tempDir('cli-out'), '--strategy', 'topk', '--k', '2', '--calib-tokens', '0', '--attn-dtype', flag, '--quiet'];
    await expect(runConvert(args('q3'))).rejects.toThrow(
      /^--attn-dtype q3: attention at q3_a: blocks of 64 weights need rows of a multiple of 64, but the attention expert's width heads_per_attention_expert × head_dim = 2 × 16 is 32 \(.*config\.json\)$/,
    );
    await expect(runConvert(args('q2'))).rejects.toThrow(/^--attn-dtype q2: attention at q2_a: .*width heads_per_attention_expert × head_dim = 2 × 16 is 32 /);
    await runConvert(args('q4')); // 32 is one Q4_0 block
  });

  test('user errors are one line naming the problem', async () => {
    await expect(runConvert(['/nonexistent', '--out', tempDir('cli-out')])).rejects.toThrow(/not a directory/);
    await expect(runConvert([dense, '--out', tempDir('cli-out'), '--calib-context', '1000'])).rejects.toThrow(/--calib-context must be an integer in 2\.\.64/);
  });
});
