import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readSafetensors } from '../../src/checkpoint/safetensors';
import { UserError } from '../../src/errors';
import { selectBackend } from '../../src/train/backend';
import { learningRate } from '../../src/train/schedule';
import { train, TrainOptions } from '../../src/train/trainer';
import { tinyTestData, tinyTestRecipe } from '../helpers/tiny_run';

// The trainer runs on wasm, the backend `auto` picks on this machine.
beforeAll(async () => {
  await selectBackend('wasm');
});

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-train-'));

function options(recipe = tinyTestRecipe(), outDir = tmp(), extra: Partial<TrainOptions> = {}): TrainOptions {
  return { recipe, ...tinyTestData(recipe), outDir, resume: false, backendName: 'wasm', verbose: false, ...extra };
}

/** Every tensor of a safetensors file as name → bytes. */
function tensorBytes(file: string): Map<string, Buffer> {
  const reader = readSafetensors(file);
  return new Map([...reader.header.tensors.keys()].map((name) => [name, reader.raw(name)]));
}

function readJsonl(file: string): Record<string, number>[] {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

test('warmup then cosine schedule', () => {
  const s = { lr: 1, minLr: 0.1, warmup: 4, maxSteps: 13 };
  expect(learningRate(0, s)).toBeCloseTo(0.25);
  expect(learningRate(3, s)).toBeCloseTo(1);
  expect(learningRate(4, s)).toBeCloseTo(1);
  expect(learningRate(8, s)).toBeCloseTo(0.55); // half-way through the decay
  expect(learningRate(12, s)).toBeCloseTo(0.1); // the last step
});

test('the loss falls: 40 steps of a shrunken tiny recipe end below 80% of the first loss', async () => {
  const recipe = tinyTestRecipe({ train: { max_steps: 40, log_every: 5, eval_every: 40, checkpoint_every: 40 } });
  const result = await train(options(recipe));
  const log = readJsonl(path.join(result.outDir, 'train_log.jsonl'));
  expect(log[0].step).toBe(1);
  expect(log[0].loss).toBeGreaterThan(5); // ≈ ln 257 at initialisation
  expect(log[log.length - 1].loss).toBeLessThan(0.8 * log[0].loss);
  expect(result.finalEval?.loss).toBeLessThan(0.8 * log[0].loss); // held out, too
  for (const key of ['loss', 'lm_loss', 'mi_loss', 'lr', 'grad_norm', 'tokens_per_s', 'elapsed_s']) expect(log[0]).toHaveProperty(key);
  const evalLog = readJsonl(path.join(result.outDir, 'eval_log.jsonl'));
  expect(evalLog[evalLog.length - 1]).toHaveProperty('layers');
  const config = JSON.parse(fs.readFileSync(path.join(result.outDir, 'config.json'), 'utf8'));
  expect(config.model_type).toBe('qwen2_moe');
  expect(config.norm_topk_prob).toBe(false);
  // Options at their defaults leave the log and the dsmoe block as they were before them.
  expect(log[0]).not.toHaveProperty('z_loss');
  for (const key of ['softmax', 'z_loss_alpha', 'granularity']) expect(config.dsmoe).not.toHaveProperty(key);
});

test('SMoE with softmax after top-k and the router z-loss learns too, and logs both auxiliary losses', async () => {
  const recipe = tinyTestRecipe({
    routing: { mode: 'topk', top_k: 2, softmax: 'after_topk', z_loss_alpha: 1e-3 },
    train: { max_steps: 40, log_every: 5, eval_every: 40, checkpoint_every: 40 },
  });
  const result = await train(options(recipe));
  const log = readJsonl(path.join(result.outDir, 'train_log.jsonl'));
  expect(log[log.length - 1].loss).toBeLessThan(0.8 * log[0].loss);
  for (const record of log) {
    expect(record.balance_loss).toBeGreaterThan(0.9); // E · Σ f_e P_e: 1 when balanced, at most E
    expect(record.balance_loss).toBeLessThanOrEqual(4);
    expect(record.z_loss).toBeGreaterThan(0);
    // total = lm + 1e-2 · balance + 1e-3 · z
    expect(record.loss).toBeCloseTo(record.lm_loss + 1e-2 * record.balance_loss + 1e-3 * record.z_loss, 4);
  }
  const config = JSON.parse(fs.readFileSync(path.join(result.outDir, 'config.json'), 'utf8'));
  expect(config.norm_topk_prob).toBe(true);
  expect(config.dsmoe).toMatchObject({ routing: 'topk', softmax: 'after_topk', z_loss_alpha: 1e-3 });
});

describe('resume', () => {
  test('4 steps + resume + 4 steps gives exactly the weights and moments of 8 uninterrupted steps', async () => {
    const recipe = tinyTestRecipe({ train: { grad_accum: 2 } });
    const straight = await train(options(recipe));
    const split = tmp();
    const first = await train(options(recipe, split, { stopAfterSteps: 4 }));
    expect(first.step).toBe(4);
    const second = await train(options(recipe, split, { resume: true }));
    expect(second.step).toBe(8);
    for (const file of ['model.safetensors', 'optimizer.safetensors']) {
      const a = tensorBytes(path.join(straight.outDir, file));
      const b = tensorBytes(path.join(split, file));
      expect([...b.keys()]).toEqual([...a.keys()]);
      for (const [name, bytes] of a) expect(Buffer.compare(bytes, b.get(name) as Buffer)).toBe(0);
    }
    // The resumed log continues the first one (each run segment also logs its first step).
    expect(readJsonl(path.join(split, 'train_log.jsonl')).map((r) => r.step)).toEqual([1, 2, 4, 5, 6, 8]);
  });

  test('attention experts (MoA): resuming reproduces the uninterrupted run, the attention routers and their moments included', async () => {
    const recipe = tinyTestRecipe({
      model: { num_attention_heads: 4, attention_experts: 2, heads_per_attention_expert: 2 },
      routing: { mi_alpha_attention: 5e-2 },
    });
    const straight = await train(options(recipe));
    const split = tmp();
    await train(options(recipe, split, { stopAfterSteps: 4 }));
    await train(options(recipe, split, { resume: true }));
    for (const file of ['model.safetensors', 'optimizer.safetensors']) {
      const a = tensorBytes(path.join(straight.outDir, file));
      const b = tensorBytes(path.join(split, file));
      expect([...b.keys()]).toEqual([...a.keys()]);
      expect([...a.keys()]).toContain('model.layers.0.self_attn.gate.weight' + (file === 'model.safetensors' ? '' : '.exp_avg'));
      for (const [name, bytes] of a) expect(Buffer.compare(bytes, b.get(name) as Buffer)).toBe(0);
    }
    const log = readJsonl(path.join(split, 'train_log.jsonl'));
    expect(log[0]).toHaveProperty('mi_loss_attention');
    expect(readJsonl(path.join(split, 'eval_log.jsonl')).pop()).toHaveProperty('attention_layers');
  });

  test('Ctrl-C saves at the end of the current step; resuming reproduces the uninterrupted run', async () => {
    const recipe = tinyTestRecipe({ routing: { mode: 'topk' } }); // the SMoE baseline trains too
    const straight = await train(options(recipe));
    const outDir = tmp();
    const interrupted = options(recipe, outDir);
    const realBatch = interrupted.dataset.trainBatch.bind(interrupted.dataset);
    // SIGINT arrives while step 3 (batch index 2) is computed, as a Ctrl-C would.
    interrupted.dataset.trainBatch = (index: number, b: number, t: number) => {
      if (index === 2) process.emit('SIGINT');
      return realBatch(index, b, t);
    };
    const stopped = await train(interrupted);
    expect(stopped.interrupted).toBe(true);
    expect(stopped.step).toBe(3);
    const state = JSON.parse(fs.readFileSync(path.join(outDir, 'trainer_state.json'), 'utf8'));
    expect(state.step).toBe(3);
    await train(options(recipe, outDir, { resume: true }));
    const a = tensorBytes(path.join(straight.outDir, 'model.safetensors'));
    const b = tensorBytes(path.join(outDir, 'model.safetensors'));
    for (const [name, bytes] of a) expect(Buffer.compare(bytes, b.get(name) as Buffer)).toBe(0);
    expect(readJsonl(path.join(outDir, 'train_log.jsonl'))[0]).toHaveProperty('balance_loss');
  });

  test('refuses a different recipe and a corrupt checkpoint, overwriting nothing', async () => {
    const recipe = tinyTestRecipe({ train: { max_steps: 2 } });
    const outDir = tmp();
    await train(options(recipe, outDir));
    // File name → sha256 (Jest's deep equality on megabyte Buffers is slow).
    const snapshot = () =>
      new Map(fs.readdirSync(outDir).map((f) => [f, crypto.createHash('sha256').update(fs.readFileSync(path.join(outDir, f))).digest('hex')]));
    const before = snapshot();

    const changed = tinyTestRecipe({ train: { max_steps: 2, lr: 5e-3 } });
    await expect(train(options(changed, outDir, { resume: true }))).rejects.toThrow(/different recipe/);

    const model = path.join(outDir, 'model.safetensors');
    const bytes = fs.readFileSync(model);
    fs.writeFileSync(model, bytes.subarray(0, bytes.length - 100)); // truncated mid-tensor
    const corrupt = snapshot();
    const error = await train(options(recipe, outDir, { resume: true, maxSteps: 4 })).catch((e) => e);
    expect(error).toBeInstanceOf(UserError);
    expect(error.message).toContain('model.safetensors');
    expect(error.message).not.toContain('\n');
    expect(snapshot()).toEqual(corrupt);
    fs.writeFileSync(model, bytes);
    expect(snapshot()).toEqual(before);

    await expect(train(options(recipe, tmp(), { resume: true }))).rejects.toThrow(/no checkpoint to resume/);
  });
});
