import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors } from '../../src/checkpoint/safetensors';
import type { ModelConfig } from '../../src/model/config';
import { decodeTensor, encodeTensor } from '../../src/plan/dtype';
import { classDtypes } from '../../src/plan/plan_format';
import { planCost } from '../../src/plan/cost';
import { writeRandomPlan } from '../../src/plan/random_plan';
import { readPlan } from '../../src/plan/read_plan';
import { planWithClassDtypes, writePlanWithClassDtypes } from '../../src/plan/requantize_plan';
import { planTensors } from '../../src/plan/tensor_table';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

// Rows of 64 weights (hidden and expert sizes) so that every quantized type can store them; a shared expert and an
// untied LM head so that every tensor class is present.
const config: ModelConfig = {
  vocab_size: 300, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1,
  num_experts: 4, moe_intermediate_size: 64, shared_expert_intermediate_size: 32, num_experts_per_tok: 2,
  max_position_embeddings: 64, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
};

describe('writePlanWithClassDtypes', () => {
  const source = writeRandomPlan(tempDir('requantize-src'), config, { dtype: 'bf16', seed: 3, k: 2 });
  const original = readSafetensors(source.weightsPath);

  test.each(['q8_0', 'q4_0', 'q3_a', 'q2_a'] as const)('experts at %s: their values are the bf16 plan re-encoded, every other tensor the same bytes', (dtype) => {
    const dir = tempDir('requantize-out');
    // chunks of 3 rows: a tensor is re-encoded in several pieces, the last one short
    const written = writePlanWithClassDtypes(source, dir, { experts: dtype, attention: 'bf16' }, 200);
    const loaded = readPlan(dir); // validates every tensor's storage shape and the file's end
    expect(loaded.plan).toEqual(written);
    expect(loaded.plan.dtypes).toEqual({ experts: dtype, attention: 'bf16' });
    const copy = readSafetensors(loaded.weightsPath);
    for (const tensor of planTensors(loaded.plan)) {
      const raw = copy.raw(tensor.name);
      const values = tensor.shape.reduce((a, b) => a * b, 1);
      if (tensor.role === 'gateUp' || tensor.role === 'down') {
        expect(tensor.dtype).toBe(dtype.toUpperCase());
        // independent path: the whole tensor decoded from bf16 and quantized in one piece
        const expected = encodeTensor(decodeTensor(original.raw(tensor.name), 'BF16', values), tensor.dtype);
        expect(Buffer.compare(raw, expected)).toBe(0);
      } else {
        expect(Buffer.compare(raw, original.raw(tensor.name))).toBe(0);
      }
    }
    for (const file of ['tokenizer.json', 'tokenizer_config.json']) {
      if (fs.existsSync(path.join(path.dirname(source.weightsPath), file))) expect(fs.existsSync(path.join(dir, file))).toBe(true);
    }
  });

  test('cost: the same parameters and FLOPs, fewer weight bytes per token, as planCost gives for those classes', () => {
    const q4 = planWithClassDtypes(source.plan, { experts: 'q4_0', attention: 'q8_0' });
    const expected = planCost(config, 'bf16', [4, 4], [2, 2], { experts: 'q4_0', attention: 'q8_0' });
    expect(q4.cost).toEqual({ ...source.plan.cost, ...expected });
    expect(q4.cost.active_params_per_token).toBe(source.plan.cost.active_params_per_token);
    expect(q4.cost.active_weight_bytes_per_token).toBeLessThan(source.plan.cost.active_weight_bytes_per_token);
    expect(q4.layers).toEqual(source.plan.layers);
  });

  test('back at the plan dtype: no dtypes field, cost unchanged', () => {
    const q4 = planWithClassDtypes(source.plan, { experts: 'q4_0', attention: 'bf16' });
    const back = planWithClassDtypes(q4, { experts: 'bf16', attention: 'bf16' });
    expect(back).not.toHaveProperty('dtypes');
    expect(back.cost).toEqual(source.plan.cost);
    expect(classDtypes(back)).toEqual({ experts: 'bf16', attention: 'bf16' });
  });

  test('threshold plans keep their calibrated experts per token', () => {
    const plan = { ...source.plan, cost: planCost(config, 'bf16', [4, 4], [1.5, 3.25]) };
    const q8 = planWithClassDtypes(plan, { experts: 'q8_0', attention: 'bf16' });
    expect(q8.cost.active_weight_bytes_per_token).toBeCloseTo(planCost(config, 'bf16', [4, 4], [1.5, 3.25], { experts: 'q8_0', attention: 'bf16' }).active_weight_bytes_per_token, 6);
  });
});
