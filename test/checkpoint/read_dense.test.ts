import * as fs from 'fs';
import * as path from 'path';
import { readDenseCheckpoint } from '../../src/checkpoint/read_dense';
import { readSafetensors, writeSafetensors } from '../../src/checkpoint/safetensors';
import { saveDenseCheckpoint } from '../../src/checkpoint/dense';
import { fromCheckpointTensors, toCheckpointTensors } from '../../src/model/checkpoint_layout';
import type { ModelConfig } from '../../src/model/config';
import { disposeParams, initParams, paramsToArrays } from '../../src/model/params';
import { config, expectUserError, saveFull, tmp } from '../helpers/saved_checkpoint';

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
  test('a config.json whose model cannot fit in memory is refused before any tensor is read', () => {
    const dir = tmp();
    saveFull(dir);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, hidden_size: 1048576, num_attention_heads: 4 }));
    expectUserError(() => readDenseCheckpoint(dir), `reading ${dir} needs ≈`, 'dense weights in f32', 'available of');
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

describe('attention experts (MoA, docs/design.md §12)', () => {
  const moa: ModelConfig = { ...config, num_attention_heads: 4, attention_experts: 2, heads_per_attention_expert: 2 }; // d 16, hd 4, KV 1

  function saveMoA(dir: string): Map<string, Float32Array> {
    const params = initParams(moa, 4);
    const arrays = paramsToArrays(params);
    disposeParams(params);
    saveDenseCheckpoint(dir, { config: moa, tensors: toCheckpointTensors(moa, arrays), configExtra: { dsmoe: { routing: 'dense' } } });
    return arrays;
  }

  test('save then read: the config and every training value come back exactly', () => {
    const dir = tmp();
    const arrays = saveMoA(dir);
    const hf = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect([hf.attention_experts, hf.heads_per_attention_expert]).toEqual([2, 2]);
    const checkpoint = readDenseCheckpoint(dir);
    expect(checkpoint.config).toEqual(moa);
    expect(checkpoint.get('model.layers.1.self_attn.gate.weight').length).toBe(2 * 16);
    expect(checkpoint.get('model.layers.1.self_attn.experts.1.o_proj.weight').length).toBe(16 * 8);
    const back = fromCheckpointTensors(moa, checkpoint.get);
    for (const [name, values] of arrays) expect(back.get(name)).toEqual(values);
  });

  test('a missing attention-expert tensor is named; a plain config.json has no MoA field', () => {
    const dir = tmp();
    saveMoA(dir);
    const file = path.join(dir, 'model.safetensors');
    const reader = readSafetensors(file);
    const kept = [...reader.header.tensors.values()].filter((t) => t.name !== 'model.layers.0.self_attn.experts.1.q_proj.bias');
    writeSafetensors(file, kept.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: reader.get(t.name) })));
    expectUserError(() => readDenseCheckpoint(dir), 'model.safetensors', 'model.layers.0.self_attn.experts.1.q_proj.bias');
    const plain = tmp();
    saveFull(plain);
    const hf = JSON.parse(fs.readFileSync(path.join(plain, 'config.json'), 'utf8'));
    expect(Object.keys(hf).filter((k) => k.includes('attention_expert'))).toEqual([]);
  });
});
