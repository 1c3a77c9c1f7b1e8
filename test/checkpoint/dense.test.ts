import * as fs from 'fs';
import * as path from 'path';
import { readDenseCheckpoint } from '../../src/checkpoint/read_dense';
import { denseTensors } from '../../src/plan/tensor_table';
import { config, saveFull, tmp } from '../helpers/saved_checkpoint';

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
