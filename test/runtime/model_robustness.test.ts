/**
 * Bad input never crashes the process: a malformed plan.json, truncated or inconsistent weights, token ids out of
 * range, and contexts longer than the cache each end as a JavaScript exception (or a rejected promise) with a
 * message that names the problem. The riskiest calls also run in a child process, whose clean exit proves that no
 * abort or segfault happened.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeRandomPlan } from '../../src/plan/random_plan';
import type { LoadedPlan } from '../../src/plan/plan_format';
import type { ModelConfig } from '../../src/model/config';
import { SparseModel } from '../../src/runtime/model';
import { ADDON_PATH, loadNative, type NativeModelSpec } from '../../src/runtime/native';
import { nativeSpec } from '../../src/runtime/spec';
import { UserError } from '../../src/errors';

const config: ModelConfig = {
  vocab_size: 260,
  hidden_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  num_experts: 4,
  moe_intermediate_size: 8,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 16,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
};

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-robust-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

let counter = 0;
function freshPlan(): { dir: string; loaded: LoadedPlan } {
  const dir = path.join(root, `plan-${counter++}`);
  return { dir, loaded: writeRandomPlan(dir, config, { dtype: 'bf16', seed: 3, k: 2 }) };
}

const clone = (spec: NativeModelSpec): NativeModelSpec => JSON.parse(JSON.stringify(spec));

describe('plan folder problems are caught before native code, with the file and field named', () => {
  test('plan.json that is not JSON', () => {
    const { dir } = freshPlan();
    fs.writeFileSync(path.join(dir, 'plan.json'), '{"format": "dsmoe-plan", ');
    expect(() => SparseModel.load(dir)).toThrow(UserError);
    expect(() => SparseModel.load(dir)).toThrow(/plan\.json: not valid JSON/);
  });

  test('plan.json with a wrong field', () => {
    const { dir } = freshPlan();
    const plan = JSON.parse(fs.readFileSync(path.join(dir, 'plan.json'), 'utf8'));
    plan.layers[0].ops[1].qkv = 'layers.0.attn.nope';
    fs.writeFileSync(path.join(dir, 'plan.json'), JSON.stringify(plan));
    expect(() => SparseModel.load(dir)).toThrow(/layers\.0\.attn\.nope/);
  });

  test('truncated weights file', () => {
    const { dir, loaded } = freshPlan();
    fs.truncateSync(loaded.weightsPath, Math.floor(fs.statSync(loaded.weightsPath).size / 2));
    expect(() => SparseModel.load(dir)).toThrow(UserError);
  });

  test('missing folder', () => {
    expect(() => SparseModel.load(path.join(root, 'nowhere'))).toThrow(/not found/);
  });
});

describe('the addon re-checks everything itself and throws', () => {
  const addon = loadNative();

  test('offsets beyond the end of a (since truncated) weights file', () => {
    const { loaded } = freshPlan();
    const spec = nativeSpec(loaded, 1);
    fs.truncateSync(loaded.weightsPath, 4096);
    expect(() => new addon.NativeModel(spec)).toThrow(/truncated or inconsistent weights file/);
  });

  test('shapes inconsistent with the config', () => {
    const { loaded } = freshPlan();
    const spec = clone(nativeSpec(loaded, 1));
    spec.layers[1].qkv.shape = [spec.layers[1].qkv.shape[0] + 1, config.hidden_size];
    expect(() => new addon.NativeModel(spec)).toThrow(/has shape \[49,24\], expected \[48,24\]/);
    const spec2 = clone(nativeSpec(loaded, 1));
    spec2.config.heads = 5;
    expect(() => new addon.NativeModel(spec2)).toThrow(/inconsistent attention shape/);
    const spec3 = clone(nativeSpec(loaded, 1));
    spec3.layers[0].kept = [0, 1, 1, 3];
    expect(() => new addon.NativeModel(spec3)).toThrow(/repeated id 1/);
    const spec4 = clone(nativeSpec(loaded, 1));
    spec4.layers[0].gateUp.dtype = 'F32';
    expect(() => new addon.NativeModel(spec4)).toThrow(/dtype F32, expected BF16/);
  });

  test('malformed spec objects', () => {
    const { loaded } = freshPlan();
    const spec = clone(nativeSpec(loaded, 1)) as unknown as Record<string, unknown>;
    expect(() => new addon.NativeModel({ ...spec, weightsPath: 7 } as never)).toThrow(/weightsPath must be a string/);
    expect(() => new addon.NativeModel({ ...spec, layers: {} } as never)).toThrow(/layers must be an array/);
    expect(() => new addon.NativeModel({ ...spec, weightsPath: path.join(root, 'missing.safetensors') } as never)).toThrow(/cannot open weights file/);
    expect(() => new (addon.NativeModel as unknown as new () => unknown)()).toThrow(/needs a spec/);
  });

  test('bad batches reject with a clear message and leave the context usable', async () => {
    const { loaded } = freshPlan();
    const model = new addon.NativeModel(nativeSpec(loaded, 2));
    const ctx = model.newContext(2, 8);
    const i32 = (...v: number[]) => new Int32Array(v);
    await expect(ctx.evaluate(i32(260), i32(0), i32(0), i32(0))).rejects.toThrow(/token id 260 at index 0 is outside the vocabulary \[0, 260\)/);
    await expect(ctx.evaluate(i32(-1), i32(0), i32(0), i32(0))).rejects.toThrow(/outside the vocabulary/);
    await expect(ctx.evaluate(i32(1), i32(2), i32(0), i32(0))).rejects.toThrow(/slot 2 is outside \[0, 2\)/);
    await expect(ctx.evaluate(i32(1), i32(0), i32(8), i32(0))).rejects.toThrow(/position 8 is outside the context of 8 tokens/);
    await expect(ctx.evaluate(i32(1), i32(0), i32(3), i32(0))).rejects.toThrow(/without gaps/);
    await expect(ctx.evaluate(i32(1, 2), i32(0, 0), i32(0, 1), i32(2))).rejects.toThrow(/output row 2 is outside/);
    await expect(ctx.evaluate(i32(1, 2), i32(0), i32(0, 1), i32(0))).rejects.toThrow(/same length/);
    await expect(ctx.evaluate(i32(), i32(), i32(), i32())).rejects.toThrow(/at least one token/);
    expect(() => ctx.evaluate(new Float32Array(1) as never, i32(0), i32(0), i32(0))).toThrow(/tokens must be a Int32Array/);
    expect(() => ctx.evaluate(i32(1), i32(0), i32(0), i32(0), { mode: 'topk' })).toThrow(/routing\.k/);
    const logits = await ctx.evaluate(i32(1, 2), i32(0, 0), i32(0, 1), i32(1));
    expect(logits).toHaveLength(config.vocab_size);
    expect(() => model.newContext(0, 8)).toThrow();
    model.dispose();
    expect(() => model.newContext(1, 8)).toThrow(/disposed/);
    // The context keeps its own reference to the weights: still usable after the model handle is disposed.
    expect(await ctx.evaluate(i32(3), i32(0), i32(2), i32(0))).toHaveLength(config.vocab_size);
  });
});

describe('SparseModel validates before calling native code', () => {
  test('token ids out of range, empty input and contexts longer than the cache', async () => {
    const { dir } = freshPlan();
    const model = SparseModel.load(dir, { threads: 1 });
    expect(() => model.logits([1, 260])).toThrow(/token id 260 at index 1 is outside the vocabulary 0\.\.259/);
    expect(() => model.logits([1, 2.5])).toThrow(/token id 2\.5/);
    expect(() => model.logits([])).toThrow(/no tokens/);
    expect(() => model.logits(new Array(17).fill(1))).toThrow(/17 tokens exceed the context of 16/);
    expect(() => model.score([1, 2, 3], { context: 17 })).toThrow(/exceeds the runtime's maxContext 16/);
    expect(() => model.generate(new Array(17).fill(1))).toThrow(/exceed the context/);
    expect(() => model.generate([1], { topP: 0 })).toThrow(/topP/);
    expect(() => model.setMode('sparse' as never)).toThrow(/mode must be/);
    // A generation that reaches the end of the cache stops there instead of overflowing it.
    const out = await model.generate(new Array(14).fill(1), { maxNewTokens: 10, temperature: 0 });
    expect(out).toHaveLength(3);
    await model.dispose();
    expect(() => model.logits([1])).toThrow(/disposed/);
  });

  test('the CUDA device is refused clearly on a machine without a GPU, before the weights are mapped', () => {
    const { dir } = freshPlan();
    if (loadNative().cpuInfo().cuda) return; // a GPU machine runs test/runtime/cuda_model.test.ts instead
    expect(() => SparseModel.load(dir, { device: 'cuda' })).toThrow(UserError);
    expect(() => SparseModel.load(dir, { device: 'cuda' })).toThrow(/^--device cuda: /);
  });
});

test('a child process survives every bad call (no abort, no segfault)', () => {
  const { loaded } = freshPlan();
  const spec = nativeSpec(loaded, 2);
  const specFile = path.join(root, 'spec.json');
  fs.writeFileSync(specFile, JSON.stringify(spec));
  const script = `
    const fs = require('fs');
    const addon = require(${JSON.stringify(ADDON_PATH)});
    const spec = JSON.parse(fs.readFileSync(${JSON.stringify(specFile)}, 'utf8'));
    const i32 = (...v) => new Int32Array(v);
    const errors = [];
    const attempt = (f) => { try { f(); } catch (e) { errors.push(e.message); } };
    attempt(() => addon.kernels.linear(new Float32Array(1), 1e6, 1e6, new Float32Array(1), 'f32', 1e6));
    attempt(() => addon.kernels.attention(new Float32Array(4), new Float32Array(1), new Float32Array(1), i32(0), i32(99), 1, 1, 1, 4, 1, 2));
    attempt(() => addon.kernels.moeFfn(new Float32Array(4), 1, 4, 2, new Float32Array(1), new Float32Array(1), 'f32', 1, i32(5), i32(0, 1), i32(7), new Float32Array(1)));
    attempt(() => new addon.NativeModel({ ...spec, embed: { ...spec.embed, offset: 2 ** 52 } }));
    attempt(() => new addon.NativeModel({ ...spec, embed: { ...spec.embed, shape: [1e9, 1e9] } }));
    attempt(() => new addon.NativeModel({ ...spec, layers: spec.layers.slice(1) }));
    attempt(() => new addon.NativeModel({ ...spec, device: 'tpu' }));
    // without a GPU (or without CUDA in the build) the CUDA model is an exception, never an abort
    if (addon.cpuInfo().cuda) errors.push('(GPU present)'); else attempt(() => new addon.NativeModel({ ...spec, device: 'cuda' }));
    const model = new addon.NativeModel(spec);
    attempt(() => model.newContext(1e6, 1e6));
    const ctx = model.newContext(1, 4);
    (async () => {
      for (const args of [[i32(1e9), i32(0), i32(0), i32(0)], [i32(1), i32(-5), i32(0), i32(0)], [i32(1), i32(0), i32(1e9), i32(0)], [i32(1), i32(0), i32(0), i32(-1)]]) {
        await ctx.evaluate(...args).then(() => errors.push('resolved!'), (e) => errors.push(e.message));
      }
      console.log(JSON.stringify(errors));
    })();
  `;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 });
  expect(child.signal).toBeNull();
  expect(child.stderr).toBe('');
  expect(child.status).toBe(0);
  const errors: string[] = JSON.parse(child.stdout.trim());
  expect(errors).toHaveLength(13);
  expect(errors[6]).toMatch(/spec\.device must be "cpu" or "cuda", got tpu/);
  if (errors[7] !== '(GPU present)') expect(errors[7]).toMatch(/no CUDA device is visible|has no CUDA runtime/);
  expect(errors).not.toContain('resolved!');
});
