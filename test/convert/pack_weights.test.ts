/**
 * Packing (src/convert/pack_weights.ts) and unpacking (src/plan/plan_reference.ts) read the same rows of the plan
 * tensor table, so packing random dense tensors and reading them back must give every tensor back exactly.
 */
import * as fs from 'fs';
import * as path from 'path';
import { writePackedWeights } from '../../src/convert/pack_weights';
import type { ModelConfig } from '../../src/model/config';
import { buildPlan, WEIGHTS_FILE } from '../../src/plan/build_plan';
import { planWeights } from '../../src/plan/plan_reference';
import { readPlan } from '../../src/plan/read_plan';
import { denseTensors } from '../../src/plan/tensor_table';
import { removeTempDirs, seededUniform, tempDir, tinyConfig } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

interface Case {
  config: ModelConfig;
  kept: number[][]; // [L] expert ids kept per layer
  qkNorm: boolean;
}

/** Random values for every dense tensor of the config (the zero shared-expert gate stays absent, as in imports). */
function randomDense(config: ModelConfig, qkNorm: boolean, seed: number): Map<string, Float32Array> {
  const rand = seededUniform(seed);
  const weights = new Map<string, Float32Array>();
  for (const tensor of denseTensors(config, { qkNorm })) {
    if (tensor.zero) continue;
    weights.set(tensor.name, Float32Array.from({ length: tensor.shape.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1));
  }
  return weights;
}

function packAndRead({ config, kept, qkNorm }: Case, weights: Map<string, Float32Array>) {
  const dir = tempDir('pack');
  const L = config.num_hidden_layers;
  const plan = buildPlan({
    config,
    dtype: 'f32',
    source: { dir: null, model_sha256: null, model_type: qkNorm ? 'olmoe' : 'qwen2_moe', routing_rule: 'softmax-unnormalized' },
    strategy: { name: 'topk', k: 1, epsilon: 0.48, calib_tokens: 0 },
    kept,
    select: Array.from({ length: L }, () => ({ mode: 'topk' as const, k: 1, epsilon: 0.48, k_max: 1, renormalize: false })),
    expectedExperts: Array.from({ length: L }, () => 1),
    calibration: null,
    qkNorm,
  });
  const dense = { config, get: (name: string) => weights.get(name) as Float32Array };
  writePackedWeights(path.join(dir, WEIGHTS_FILE), plan, dense, { format: 'pt' });
  fs.writeFileSync(path.join(dir, 'plan.json'), JSON.stringify(plan));
  return planWeights(readPlan(dir, { qkNorm: true }));
}

const all = (config: ModelConfig) => Array.from({ length: config.num_hidden_layers }, () => Array.from({ length: config.num_experts }, (_, e) => e));

describe('pack → unpack is the identity on every dense tensor', () => {
  const shared: ModelConfig = { ...tinyConfig, shared_expert_intermediate_size: 5, tie_word_embeddings: true };
  test.each<[string, Case]>([
    ['no shared expert, untied', { config: tinyConfig, kept: all(tinyConfig), qkNorm: false }],
    ['shared expert, tied', { config: shared, kept: all(shared), qkNorm: false }],
    ['pruned experts', { config: shared, kept: [[0, 2, 3], [1]], qkNorm: false }],
    ['q/k norms', { config: tinyConfig, kept: [[1, 2], [0, 1, 2, 3]], qkNorm: true }],
  ])('%s', (_, c) => {
    const weights = randomDense(c.config, c.qkNorm, 17);
    const unpacked = packAndRead(c, weights);
    let checked = 0;
    for (const [name, values] of weights) {
      const expert = /experts\.(\d+)\./.exec(name); // the dense names of test fixtures, spelled out on purpose
      const layer = Number(/layers\.(\d+)\./.exec(name)?.[1]);
      if (expert && !c.kept[layer].includes(Number(expert[1]))) {
        expect(() => unpacked.get(name)).toThrow(`expert ${expert[1]} of layer ${layer} was pruned`);
        continue;
      }
      expect(unpacked.get(name)).toEqual(values);
      checked++;
    }
    expect(checked).toBeGreaterThan(c.config.num_hidden_layers * 10);
    expect(unpacked.qkNorm === true).toBe(c.qkNorm);
  });
});
