import * as fs from 'fs';
import * as path from 'path';
import { writeRandomPlan } from '../../src/plan/random_plan';
import { layerOps } from '../../src/plan/plan_format';
import { readPlan } from '../../src/plan/read_plan';
import { readSafetensors } from '../../src/checkpoint/safetensors';
import { quantize } from '../../src/plan/quantize';
import { TENSOR_ALIGNMENT } from '../../src/checkpoint/streaming_safetensors_writer';
import { parameterCounts, type ModelConfig } from '../../src/model/config';
import { removeTempDirs, tempDir as fixtureTempDir } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const tiny: ModelConfig = {
  vocab_size: 300,
  hidden_size: 12,
  num_hidden_layers: 2,
  num_attention_heads: 3,
  num_key_value_heads: 1,
  num_experts: 4,
  moe_intermediate_size: 5,
  shared_expert_intermediate_size: 3,
  num_experts_per_tok: 2,
  max_position_embeddings: 64,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

const tempDir = () => fixtureTempDir('random-plan');

describe('writeRandomPlan', () => {
  test.each(['f32', 'bf16', 'f16'] as const)('writes a plan that readPlan accepts (%s)', (dtype) => {
    const dir = tempDir();
    const { plan, header, weightsPath } = writeRandomPlan(dir, tiny, { dtype, seed: 7, k: 2 });
    expect(plan.dtype).toBe(dtype);
    expect(plan.layers).toHaveLength(2);
    expect(layerOps(plan.layers[1]).select).toMatchObject({ mode: 'topk', k: 2, renormalize: false });
    expect(layerOps(plan.layers[0]).shared).not.toBeNull();
    // every real tensor starts at a 64-byte-aligned absolute offset
    for (const info of header.tensors.values()) {
      if (!info.name.startsWith('__pad__.')) expect(info.begin % TENSOR_ALIGNMENT).toBe(0);
    }
    const file = readSafetensors(weightsPath);
    expect(Array.from(file.get('layers.0.attn_norm'))).toEqual(new Array(12).fill(1));
    expect(Array.from(file.get('layers.1.attn.qkv_bias'))).toEqual(new Array(20).fill(0));
    const embed = file.get('embed');
    const mean = embed.reduce((a, b) => a + b, 0) / embed.length;
    const std = Math.sqrt(embed.reduce((a, b) => a + (b - mean) ** 2, 0) / embed.length);
    expect(Math.abs(mean)).toBeLessThan(0.002);
    expect(std).toBeGreaterThan(0.018);
    expect(std).toBeLessThan(0.022);
    expect(plan.cost.total_params).toBe(parameterCounts(tiny).total);
    expect(plan.cost.dense_active_params_per_token).toBe(parameterCounts(tiny).activePerToken(4));
    expect(plan.cost.active_params_per_token).toBe(parameterCounts(tiny).activePerToken(2));
    expect(fs.existsSync(path.join(dir, 'tokenizer.json'))).toBe(true);
  });

  test('q4_0 experts and q8_0 attention: the same draws as the f32 plan, quantized; smaller file and cost', () => {
    const blocks: ModelConfig = { ...tiny, hidden_size: 32, moe_intermediate_size: 32, num_attention_heads: 2 };
    const f32 = writeRandomPlan(tempDir(), blocks, { dtype: 'f32', seed: 3, k: 2 });
    const q = writeRandomPlan(tempDir(), blocks, { dtype: 'f32', seed: 3, k: 2, dtypes: { experts: 'q4_0', attention: 'q8_0' } });
    expect(q.plan.dtypes).toEqual({ experts: 'q4_0', attention: 'q8_0' });
    const wantGateUp = quantize(readSafetensors(f32.weightsPath).get('layers.1.experts.gate_up'), 'Q4_0');
    expect(readSafetensors(q.weightsPath).raw('layers.1.experts.gate_up').equals(wantGateUp)).toBe(true);
    const wantQkv = quantize(readSafetensors(f32.weightsPath).get('layers.0.attn.qkv'), 'Q8_0');
    expect(readSafetensors(q.weightsPath).raw('layers.0.attn.qkv').equals(wantQkv)).toBe(true);
    // the embedding stays at the plan dtype, byte for byte
    expect(readSafetensors(q.weightsPath).raw('embed').equals(readSafetensors(f32.weightsPath).raw('embed'))).toBe(true);
    expect(q.plan.cost.active_weight_bytes_per_token).toBeLessThan(f32.plan.cost.active_weight_bytes_per_token);
    expect(q.plan.cost.total_params).toBe(f32.plan.cost.total_params);
  });

  test('q3_a experts and q2_a attention: the same draws, quantized; bytes per token ordered by bits', () => {
    const blocks: ModelConfig = { ...tiny, hidden_size: 64, moe_intermediate_size: 64, num_attention_heads: 2 };
    const f32 = writeRandomPlan(tempDir(), blocks, { dtype: 'f32', seed: 3, k: 2 });
    const q = writeRandomPlan(tempDir(), blocks, { dtype: 'f32', seed: 3, k: 2, dtypes: { experts: 'q3_a', attention: 'q2_a' } });
    expect(q.plan.dtypes).toEqual({ experts: 'q3_a', attention: 'q2_a' });
    const wantDown = quantize(readSafetensors(f32.weightsPath).get('layers.1.experts.down'), 'Q3_A');
    expect(readSafetensors(q.weightsPath).raw('layers.1.experts.down').equals(wantDown)).toBe(true);
    const wantO = quantize(readSafetensors(f32.weightsPath).get('layers.0.attn.o'), 'Q2_A');
    expect(readSafetensors(q.weightsPath).raw('layers.0.attn.o').equals(wantO)).toBe(true);
    // bytes per token: each expert format below the wider one (q8 8.5, q4 4.5, q3 3.5, q2 2.5 bits per weight)
    const bytes = (['q8_0', 'q4_0', 'q3_a', 'q2_a'] as const).map(
      (experts) => writeRandomPlan(tempDir(), blocks, { dtype: 'f32', seed: 3, k: 2, dtypes: { experts, attention: 'f32' } }).plan.cost.active_weight_bytes_per_token,
    );
    for (let i = 1; i < bytes.length; i++) expect(bytes[i]).toBeLessThan(bytes[i - 1]);
    // exactly: the experts' weights per token times the bytes per weight saved
    const expertWeights = 2 * blocks.num_hidden_layers * 3 * 64 * 64; // k = 2 experts of 3·I·d weights per layer
    expect(bytes[2] - bytes[3]).toBeCloseTo((expertWeights * (28 - 20)) / 64, 6);
  });

  test('writing a plan with no dtypes different from dtype leaves the field out', () => {
    const q = writeRandomPlan(tempDir(), tiny, { dtype: 'bf16', seed: 3, k: 2, dtypes: { experts: 'bf16', attention: 'bf16' } });
    expect(q.plan.dtypes).toBeUndefined();
  });

  test('is deterministic in the seed', () => {
    const a = tempDir();
    const b = tempDir();
    const c = tempDir();
    writeRandomPlan(a, tiny, { dtype: 'bf16', seed: 1, k: 1 });
    writeRandomPlan(b, tiny, { dtype: 'bf16', seed: 1, k: 1 });
    writeRandomPlan(c, tiny, { dtype: 'bf16', seed: 2, k: 1 });
    const bytes = (dir: string) => fs.readFileSync(path.join(dir, 'weights.safetensors'));
    expect(bytes(a).equals(bytes(b))).toBe(true);
    expect(bytes(a).equals(bytes(c))).toBe(false);
  });

  test('threshold mode and tied embeddings', () => {
    const dir = tempDir();
    const config = { ...tiny, tie_word_embeddings: true, shared_expert_intermediate_size: 0 };
    const { plan } = writeRandomPlan(dir, config, { dtype: 'f32', seed: 3, k: 2, strategy: 'threshold', epsilon: 0.5 });
    expect(plan.final.lm_head).toBe(plan.embedding);
    expect(layerOps(plan.layers[0]).select).toMatchObject({ mode: 'threshold', epsilon: 0.5, k_max: 4 });
    expect(layerOps(plan.layers[0]).shared).toBeNull();
    expect(readPlan(dir).header.tensors.has('lm_head')).toBe(false);
  });
});
