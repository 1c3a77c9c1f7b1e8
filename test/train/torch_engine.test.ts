/**
 * The PyTorch engine (engines/torch, `dsmoe train --engine torch`) against the tfjs trainer: from the same step-0
 * weights (written by the tfjs trainer) and the same prepared batches, the first 20 steps' losses agree within
 * 1e-4 relative; 2 gloo processes equal 1 process, also with AdamW sharded (ZeRO-1) and stopped and resumed; the
 * checkpoint is accepted by `dsmoe eval` and `dsmoe convert`. Needs Python 3 with torch (Debian: python3-torch):
 * without it these tests are skipped with the reason printed; the launcher's checks always run.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { readSafetensors } from '../../src/checkpoint/safetensors';
import { convertCommand } from '../../src/cli/commands/convert';
import { evalCommand } from '../../src/cli/commands/eval';
import { writePreparedData } from '../../src/data';
import { UserError } from '../../src/errors';
import { denseTensors } from '../../src/plan/tensor_table';
import { loadRecipe, type Recipe } from '../../src/recipe';
import { selectBackend } from '../../src/train/backend';
import { checkTorch, DEFAULT_PYTHON, launchTorchEngine, torchrunArgs, torchRunSpec, validateLaunch, type TorchRunOptions } from '../../src/train/torch_engine';
import { train } from '../../src/train/trainer';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';
import { writeTestRecipe } from '../helpers/recipe_fixtures';
import { runCommand } from '../helpers/run_command';

afterAll(removeTempDirs);

const python = process.env.DSMOE_PYTHON ?? DEFAULT_PYTHON;
const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
const torchReason = probe.error ? `${python} does not run (${probe.error.message})` : probe.status !== 0 ? (probe.stderr.trim().split('\n').pop() ?? 'import torch failed') : null;
if (torchReason) process.stderr.write(`test/train/torch_engine: engine tests skipped: ${torchReason}\n`);
const describeWithTorch = torchReason ? describe.skip : describe;
// Each engine run starts Python processes that import torch: seconds on an idle machine, minutes on a loaded one.
const ENGINE_TIMEOUT = 600_000;

/** A 2-layer, 4-expert model on a 64 kB corpus: 20 steps of 2 micro-batches of 8 windows of 32 tokens. */
function engineRecipe(dir: string): Recipe {
  const file = writeTestRecipe(dir, 'torch-engine');
  const yaml = YAML.parse(fs.readFileSync(file, 'utf8'));
  yaml.model = { ...yaml.model, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, num_experts: 4, moe_intermediate_size: 16 };
  yaml.train = { ...yaml.train, batch_size: 8, grad_accum: 2, max_steps: 20, warmup_steps: 5, log_every: 1, eval_every: 20, checkpoint_every: 20, eval_tokens: 512 };
  fs.writeFileSync(file, YAML.stringify(yaml));
  return loadRecipe(file);
}

function readJsonl(file: string): Record<string, number>[] {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
}

function weights(dir: string): Map<string, Float32Array> {
  const reader = readSafetensors(path.join(dir, 'model.safetensors'));
  return new Map([...reader.header.tensors.keys()].map((name) => [name, reader.get(name)]));
}

function maxDifference(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()]).toEqual([...b.keys()]);
  let worst = 0;
  for (const [name, values] of a) {
    const other = b.get(name) as Float32Array;
    for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(values[i] - other[i]));
  }
  return worst;
}

describeWithTorch('the torch engine (f32, CPU)', () => {
  const root = tempDir('torch-engine');
  let recipe: Recipe;
  let options: (outDir: string, extra?: Partial<TorchRunOptions>) => TorchRunOptions;
  const initDir = path.join(root, 'init');
  const fromInit = (name: string) => {
    const dir = path.join(root, name);
    fs.cpSync(initDir, dir, { recursive: true });
    return dir;
  };
  const launch = { python, nprocPerNode: 1, nnodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', masterPort: 29500 };
  async function runTorch(runOptions: TorchRunOptions, processes = 1): Promise<void> {
    let output = '';
    const code = await launchTorchEngine(runOptions, { ...launch, nprocPerNode: processes }, (text) => (output += text));
    if (code !== 0) throw new Error(`torch engine exited with ${code}:\n${output}`);
  }
  let oneProcess = '';

  beforeAll(async () => {
    await selectBackend('wasm');
    recipe = engineRecipe(root);
    const prepared = writePreparedData(path.join(root, 'prepared'), recipe);
    options = (outDir, extra = {}) => ({
      recipe,
      prepared,
      outDir,
      resume: true,
      maxSteps: 20,
      device: 'cpu',
      precision: 'f32',
      parallel: 'ddp',
      activationCheckpointing: false,
      ...extra,
    });
    // The tfjs trainer writes the step-0 weights both engines start from.
    const { tokenizer, dataset } = prepared;
    await train({ recipe, tokenizer, dataset, outDir: initDir, resume: false, stopAfterSteps: 0, backendName: 'wasm', verbose: false });
  }, ENGINE_TIMEOUT);

  test('from the same step-0 weights and batches, 20 steps of tfjs and of torch give losses within 1e-4 relative', async () => {
    const tfjsDir = fromInit('tfjs');
    const prepared = options(tfjsDir).prepared;
    await train({ recipe, tokenizer: prepared.tokenizer, dataset: prepared.dataset, outDir: tfjsDir, resume: true, backendName: 'wasm', verbose: false });
    oneProcess = fromInit('torch-1');
    await runTorch(options(oneProcess));
    const tfjsLog = readJsonl(path.join(tfjsDir, 'train_log.jsonl'));
    const torchLog = readJsonl(path.join(oneProcess, 'train_log.jsonl'));
    expect(torchLog.map((r) => r.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(tfjsLog.map((r) => r.step)).toEqual(torchLog.map((r) => r.step));
    expect(torchLog[19].loss).toBeLessThan(0.9 * torchLog[0].loss); // it trains
    tfjsLog.forEach((expected, i) => {
      const actual = torchLog[i];
      for (const key of ['loss', 'lm_loss']) expect(Math.abs(actual[key] - expected[key]) / Math.abs(expected[key])).toBeLessThan(1e-4);
      expect(Math.abs(actual.mi_loss - expected.mi_loss)).toBeLessThan(1e-4 * Math.abs(expected.loss)); // near 0: absolute
      expect(actual.lr).toBeCloseTo(expected.lr, 12);
      expect(Math.abs(actual.grad_norm - expected.grad_norm) / expected.grad_norm).toBeLessThan(1e-3);
    });
    for (const key of ['loss', 'lm_loss', 'mi_loss', 'lr', 'grad_norm', 'tokens_per_s', 'elapsed_s']) expect(torchLog[0]).toHaveProperty(key);
    expect(maxDifference(weights(tfjsDir), weights(oneProcess))).toBeLessThan(1e-4);
    const tfjsEval = readJsonl(path.join(tfjsDir, 'eval_log.jsonl'))[0];
    const torchEval = readJsonl(path.join(oneProcess, 'eval_log.jsonl'))[0] as unknown as typeof tfjsEval & { layers: Record<string, number>[] };
    expect(torchEval.tokens).toBe(tfjsEval.tokens);
    expect(Math.abs(torchEval.loss - tfjsEval.loss) / tfjsEval.loss).toBeLessThan(1e-4);
    expect(torchEval.layers[0].top1_mass).toBeCloseTo((tfjsEval as unknown as typeof torchEval).layers[0].top1_mass, 4);
  }, ENGINE_TIMEOUT);

  test('2 gloo processes (each half of every micro-batch) equal 1 process with the same global batch', async () => {
    const twoProcesses = fromInit('torch-2');
    await runTorch(options(twoProcesses), 2);
    const one = readJsonl(path.join(oneProcess, 'train_log.jsonl'));
    const two = readJsonl(path.join(twoProcesses, 'train_log.jsonl'));
    expect(two.length).toBe(one.length);
    two.forEach((record, i) => expect(Math.abs(record.loss - one[i].loss) / one[i].loss).toBeLessThan(1e-5));
    expect(maxDifference(weights(oneProcess), weights(twoProcesses))).toBeLessThan(1e-5);
  }, ENGINE_TIMEOUT);

  test('2 processes with AdamW sharded (ZeRO-1), stopped after 10 steps and resumed, equal 1 uninterrupted process', async () => {
    const dir = fromInit('torch-zero');
    await runTorch(options(dir, { stopAfterSteps: 10, shardOptimizer: true }), 2);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'trainer_state.json'), 'utf8')).step).toBe(10);
    await runTorch(options(dir, { shardOptimizer: true }), 2);
    expect(maxDifference(weights(oneProcess), weights(dir))).toBeLessThan(1e-5);
    const moments = (d: string) => {
      const reader = readSafetensors(path.join(d, 'optimizer.safetensors'));
      return new Map([...reader.header.tensors.keys()].map((name) => [name, reader.get(name)]));
    };
    expect(maxDifference(moments(oneProcess), moments(dir))).toBeLessThan(1e-6); // gathered from both shards
    expect(readJsonl(path.join(dir, 'train_log.jsonl')).map((r) => r.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  }, ENGINE_TIMEOUT);

  test('dsmoe eval and dsmoe convert accept the torch checkpoint as it is', async () => {
    const torchEval = readJsonl(path.join(oneProcess, 'eval_log.jsonl'))[0];
    const stdout = await runCommand(evalCommand as never, ['eval', oneProcess, '--json', '--backend', 'wasm']);
    const result = JSON.parse(stdout.split('\n').filter((line) => line.startsWith('{')).pop() as string);
    expect(Math.abs(result.loss - torchEval.loss) / torchEval.loss).toBeLessThan(1e-4); // the same held-out windows
    const sparse = path.join(root, 'sparse');
    await runCommand(convertCommand as never, ['convert', oneProcess, '--out', sparse, '--calib-tokens', '512']);
    expect(JSON.parse(fs.readFileSync(path.join(sparse, 'plan.json'), 'utf8')).source.dir).toBe(oneProcess);
  }, ENGINE_TIMEOUT);
});

describe('the torch launcher', () => {
  test('a missing Python is one clear error', () => {
    expect(() => checkTorch('/nonexistent/python3')).toThrow(UserError);
    expect(() => checkTorch('/nonexistent/python3')).toThrow(/cannot run \/nonexistent\/python3.*python3-torch/);
  });

  test('process counts that cannot split a micro-batch evenly, and bad rendezvous flags, are refused', () => {
    const launch = { python, nprocPerNode: 2, nnodes: 1, nodeRank: 0, masterAddr: 'a', masterPort: 29500 };
    expect(() => validateLaunch(launch, 16)).not.toThrow();
    expect(() => validateLaunch({ ...launch, nprocPerNode: 3 }, 16)).toThrow(/batch_size 16 is not a multiple of the 3 processes/);
    expect(() => validateLaunch({ ...launch, nnodes: 2, nodeRank: 2 }, 16)).toThrow(/--node-rank must be an integer in 0..1/);
    expect(() => validateLaunch({ ...launch, masterPort: 70000 }, 16)).toThrow(/--master-port/);
  });

  test('several machines get the rendezvous flags; one machine runs standalone', () => {
    const multi = torchrunArgs({ python, nprocPerNode: 8, nnodes: 4, nodeRank: 3, masterAddr: '10.0.0.1', masterPort: 29400 }, '/r/torch_run.json');
    expect(multi).toEqual(expect.arrayContaining(['--nproc_per_node=8', '--nnodes=4', '--node_rank=3', '--master_addr=10.0.0.1', '--master_port=29400']));
    expect(multi.slice(-4)).toEqual(['-m', 'dsmoe_torch.train', '--spec', '/r/torch_run.json']);
    expect(torchrunArgs({ python, nprocPerNode: 2, nnodes: 1, nodeRank: 0, masterAddr: 'x', masterPort: 1 }, 's')).toContain('--standalone');
    // With a port (what launchTorchEngine passes): the standalone rendezvous on that port, not torch 1.13's fixed 29400.
    const local = torchrunArgs({ python, nprocPerNode: 2, nnodes: 1, nodeRank: 0, masterAddr: 'x', masterPort: 1 }, 's', 41234);
    expect(local).not.toContain('--standalone');
    expect(local).toEqual(expect.arrayContaining(['--rdzv_backend=c10d', '--rdzv_endpoint=localhost:41234']));
    expect(local.filter((a) => a.startsWith('--rdzv_id=')).length).toBe(1);
  });

  test('the run spec lists the tensor table in checkpoint order, decay on matrices only', () => {
    const root = tempDir('torch-spec');
    const recipe = engineRecipe(root);
    const prepared = writePreparedData(path.join(root, 'prepared'), recipe, { steps: 1 });
    const spec = torchRunSpec({ recipe, prepared, outDir: root, resume: false, maxSteps: 1, device: 'cpu', precision: 'f32', parallel: 'ddp', activationCheckpointing: false });
    const tensors = spec.tensors as { name: string; shape: number[]; trained: boolean; decay: boolean }[];
    const config = { ...recipe.model };
    expect(tensors.map((t) => t.name)).toEqual(denseTensors(config).map((t) => t.name));
    for (const t of tensors) expect(t.decay).toBe(t.shape.length === 2 && t.trained); // as paramSpecs: matrices
    expect(tensors.some((t) => t.decay)).toBe(true);
    expect(tensors.find((t) => t.name.endsWith('shared_expert_gate.weight'))?.trained).toBe(false); // the zero gate
    expect((spec.hf_config as { dsmoe: { recipe_hash: string } }).dsmoe.recipe_hash).toBe((spec.recipe as { hash: string }).hash);
    const topk = { ...recipe, routing: { ...recipe.routing, mode: 'topk' as const } };
    expect(() => torchRunSpec({ recipe: topk, prepared, outDir: root, resume: false, maxSteps: 1, device: 'cpu', precision: 'f32', parallel: 'ddp', activationCheckpointing: false })).toThrow(/dense DS-MoE routing only/);
    const zLoss = { ...recipe, routing: { ...recipe.routing, z_loss_alpha: 1e-3 } };
    expect(() => torchRunSpec({ recipe: zLoss, prepared, outDir: root, resume: false, maxSteps: 1, device: 'cpu', precision: 'f32', parallel: 'ddp', activationCheckpointing: false })).toThrow(
      /routing\.z_loss_alpha 0\.001: the torch engine has no router z-loss \(use --engine tfjs\)/,
    );
    const moa = { ...recipe, model: { ...recipe.model, attention_experts: recipe.model.num_attention_heads, heads_per_attention_expert: 1 } };
    expect(() => torchRunSpec({ recipe: moa, prepared, outDir: root, resume: false, maxSteps: 1, device: 'cpu', precision: 'f32', parallel: 'ddp', activationCheckpointing: false })).toThrow(/does not train attention experts/);
  });
});
