/** `dsmoe convert` on Hugging Face folders and `dsmoe export`, through their yargs command modules. */
import * as fs from 'fs';
import * as path from 'path';
import yargs, { type CommandModule } from 'yargs';
import { convertCommand } from '../../../src/cli/commands/convert';
import { exportCommand } from '../../../src/cli/commands/export';
import { layerOps } from '../../../src/plan/plan_format';
import { readPlan } from '../../../src/plan/read_plan';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../../helpers/dense_fixtures';
import { writeHfFolder } from '../../helpers/hf_fixtures';

afterAll(removeTempDirs);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function run(command: CommandModule<any, any>, argv: string[]): Promise<void> {
  const write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    await yargs(argv).command(command).strict().fail((message, error) => {
      throw error ?? new Error(message);
    }).parseAsync();
  } finally {
    write.mockRestore();
  }
}

test('convert calibrates an imported Mixtral (sharded, BF16) and keeps its renormalised rule', async () => {
  const hf = tempDir('cli-mixtral');
  writeHfFolder(hf, 'mixtral', { sharded: true, dtype: 'BF16' });
  const text = path.join(tempDir('cli-text'), 'calib.txt');
  fs.writeFileSync(text, 'In the beginning God created the heaven and the earth. '.repeat(20));
  const out = tempDir('cli-plan');
  await run(convertCommand, ['convert', hf, '--out', out, '--calib-text', text, '--calib-tokens', '128', '--calib-context', '32', '--threads', '1', '--quiet']);
  const { plan } = readPlan(out);
  expect(plan.source).toMatchObject({ model_type: 'mixtral', routing_rule: 'softmax-renormalized' });
  for (const layer of plan.layers) expect(layerOps(layer).select.renormalize).toBe(true);
  expect(plan.calibration?.tokens).toBe(128);
});

test('export writes the Hugging Face folder from a plan', async () => {
  const hf = tempDir('cli-qwen');
  writeHfFolder(hf, 'qwen2_moe', { sharedExpert: true });
  const plan = tempDir('cli-qwen-plan');
  await run(convertCommand, ['convert', hf, '--out', plan, '--strategy', 'topk', '--calib-tokens', '0', '--quiet']);
  const out = tempDir('cli-export');
  await run(exportCommand, ['export', plan, '--out', out, '--dtype', 'bf16', '--quiet']);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  expect(config).toMatchObject({ model_type: 'qwen2_moe', num_experts_per_tok: 2, norm_topk_prob: false, shared_expert_intermediate_size: 5, torch_dtype: 'bfloat16' });
});

test('export --format gguf writes one GGUF file; block dtypes are for GGUF only', async () => {
  const dense = tempDir('cli-gguf-dense');
  const config = { ...tinyConfig, hidden_size: 32, num_attention_heads: 2, moe_intermediate_size: 32 };
  writeDenseFolder(dense, config, randomDenseWeights(config, 4));
  const file = path.join(tempDir('cli-gguf'), 'model.gguf');
  await run(exportCommand, ['export', dense, '--format', 'gguf', '--out', file, '--dtype', 'q8_0', '--top-k', '2', '--quiet']);
  const bytes = fs.readFileSync(file);
  expect(bytes.subarray(0, 4).toString('latin1')).toBe('GGUF');
  expect(bytes.readUInt32LE(4)).toBe(3);
  await expect(run(exportCommand, ['export', dense, '--out', tempDir('cli-hf-q8'), '--dtype', 'q8_0', '--quiet'])).rejects.toThrow(/f32 or bf16.*--format gguf/);
});
