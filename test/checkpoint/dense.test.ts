import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { saveDenseCheckpoint, NamedTensor } from '../../src/checkpoint/dense';
import { readDenseCheckpoint } from '../../src/checkpoint/read_dense';
import { readSafetensors, writeSafetensors } from '../../src/checkpoint/safetensors';
import { UserError } from '../../src/errors';
import { ModelConfig } from '../../src/model/config';
import { toCheckpointTensors } from '../../src/model/checkpoint_layout';
import { denseTensors } from '../../src/plan/tensor_table';
import { initParams, paramsToArrays, disposeParams } from '../../src/model/params';
import { buildTokenizer } from '../../src/data';

const config: ModelConfig = {
  vocab_size: 257,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  num_experts: 3,
  moe_intermediate_size: 8,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 32,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

function modelTensors(): NamedTensor[] {
  const params = initParams(config, 3);
  const tensors = toCheckpointTensors(config, paramsToArrays(params));
  disposeParams(params);
  return tensors;
}

const state = {
  step: 5,
  max_steps: 10,
  recipe_hash: 'abc',
  recipe_name: 't',
  seed: 1,
  tokens_seen: 100,
  elapsed_s: 1,
  lr: 0.001,
  rng_state: null,
  backend: 'cpu',
};

function saveFull(dir: string, tensors = modelTensors()): NamedTensor[] {
  const zeros = tensors.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(0.5) }));
  saveDenseCheckpoint(dir, {
    config,
    tensors,
    tokenizer: buildTokenizer({ type: 'byte', vocab_size: 257 }, ''),
    trainerState: state,
    optimizerState: { expAvg: zeros, expAvgSq: zeros },
    configExtra: { dsmoe: { routing: 'dense' } },
  });
  return tensors;
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-ckpt-'));

/** Runs `f`, expecting a one-line UserError whose message contains every fragment. */
function expectUserError(f: () => unknown, ...fragments: string[]): void {
  let error: unknown;
  try {
    f();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(UserError);
  const message = (error as Error).message;
  expect(message).not.toContain('\n');
  for (const fragment of fragments) expect(message).toContain(fragment);
}

test('dense checkpoint round trip: config, every Qwen2-MoE tensor, trainer and optimizer state', () => {
  const dir = tmp();
  const tensors = saveFull(dir);
  for (const f of ['config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer_state.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    expect(fs.existsSync(path.join(dir, f))).toBe(true);
  }
  expect(fs.readdirSync(dir).some((f) => f.includes('.tmp-'))).toBe(false);
  const loaded = readDenseCheckpoint(dir, { forResume: true });
  expect(loaded.config).toEqual(config);
  expect(loaded.hfConfig.model_type).toBe('qwen2_moe');
  expect(loaded.hfConfig.norm_topk_prob).toBe(false);
  for (const t of tensors) expect(loaded.get(t.name)).toEqual(t.data);
  expect(loaded.get('model.layers.1.mlp.shared_expert_gate.weight')).toEqual(new Float32Array(16));
  expect(loaded.get('model.layers.0.self_attn.q_proj.bias')).toEqual(new Float32Array(2 * 8));
  expect(loaded.trainerState?.step).toBe(5);
  expect(loaded.optimizer?.expAvg.get('lm_head.weight')?.[0]).toBe(0.5);
  for (const t of denseTensors(config)) expect(loaded.get(t.name)).toHaveLength(t.shape.reduce((a, b) => a * b, 1));
});

describe('a damaged checkpoint is rejected with one line naming the file and the tensor', () => {
  test('missing tensor', () => {
    const dir = tmp();
    const tensors = saveFull(dir).filter((t) => t.name !== 'model.layers.1.mlp.experts.2.up_proj.weight');
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors.map((t) => ({ ...t, dtype: 'F32' as const })));
    expectUserError(() => readDenseCheckpoint(dir), 'model.safetensors', 'model.layers.1.mlp.experts.2.up_proj.weight');
  });
  test('wrong shape', () => {
    const dir = tmp();
    const tensors = saveFull(dir).map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [4, 4] } : t));
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors.map((t) => ({ ...t, dtype: 'F32' as const })));
    expectUserError(() => readDenseCheckpoint(dir), 'model.safetensors', 'model.norm.weight', '[4, 4]');
  });
  test('truncated weights file', () => {
    const dir = tmp();
    saveFull(dir);
    const file = path.join(dir, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 7);
    expectUserError(() => readDenseCheckpoint(dir), 'model.safetensors');
  });
  test('config.json that is not JSON, or not a qwen2_moe config', () => {
    const dir = tmp();
    saveFull(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "qwen2_moe",');
    expectUserError(() => readDenseCheckpoint(dir), 'config.json', 'JSON');
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "llama"}');
    expectUserError(() => readDenseCheckpoint(dir), 'config.json', 'qwen2_moe');
  });
  test('a save cut off half-way (files from two different saves) cannot be resumed', () => {
    const dir = tmp();
    saveFull(dir);
    const stale = fs.readFileSync(path.join(dir, 'trainer_state.json'));
    saveFull(dir); // a newer save whose trainer_state.json "did not get written"
    fs.writeFileSync(path.join(dir, 'trainer_state.json'), stale);
    expectUserError(() => readDenseCheckpoint(dir, { forResume: true }), 'different save');
    expect(readSafetensors(path.join(dir, 'model.safetensors')).header.metadata.checkpoint_id).toBeDefined();
  });
  test('missing folder', () => {
    expectUserError(() => readDenseCheckpoint(path.join(tmp(), 'nope')), 'no such checkpoint folder');
  });
});
