/**
 * The tensor table against the layouts of docs/design.md §2 and §4, spelled out here independently of it: which dense
 * tensors each packed plan tensor concatenates, in which order, and that nothing is packed twice or lost.
 */
import type { ModelConfig } from '../../src/model/config';
import { paramSpecs } from '../../src/model/params';
import { buildPlan } from '../../src/plan/build_plan';
import { denseLayer, denseTensors, planTensors } from '../../src/plan/tensor_table';
import { tinyConfig } from '../helpers/dense_fixtures';

// d 8, H 2, KV 1, hd 4, E 4, I 6; a shared expert of 5; layer 0 keeps experts 0, 2, 3, layer 1 only expert 1
const config: ModelConfig = { ...tinyConfig, shared_expert_intermediate_size: 5 };
const kept = [[0, 2, 3], [1]];

function plan(qkNorm: boolean, dtype: 'f32' | 'bf16' = 'bf16') {
  return buildPlan({
    config,
    dtype,
    source: { dir: null, model_sha256: null, model_type: 'qwen2_moe', routing_rule: 'softmax-unnormalized' },
    strategy: { name: 'topk', k: 1, epsilon: 0.48, calib_tokens: 0 },
    kept,
    select: kept.map(() => ({ mode: 'topk' as const, k: 1, epsilon: 0.48, k_max: 1, renormalize: false })),
    expectedExperts: [1, 1],
    calibration: null,
    qkNorm,
  });
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const layer = (l: number) => `model.layers.${l}`;

test('each packed tensor is its dense parts in the order of docs/design.md §4, at the plan dtype or F32', () => {
  const rows = new Map(planTensors(plan(false)).map((t) => [t.name, t]));
  const parts = (name: string) => rows.get(name)!.parts.map((p) => p.name);
  expect([...rows.keys()].slice(0, 10)).toEqual([
    'embed',
    'layers.0.attn_norm',
    'layers.0.attn.qkv',
    'layers.0.attn.qkv_bias',
    'layers.0.attn.o',
    'layers.0.mlp_norm',
    'layers.0.router',
    'layers.0.experts.gate_up',
    'layers.0.experts.down',
    'layers.0.shared.gate_up',
  ]);
  expect(parts('layers.0.attn.qkv')).toEqual(['q', 'k', 'v'].map((p) => `${layer(0)}.self_attn.${p}_proj.weight`));
  expect(parts('layers.1.attn.qkv_bias')).toEqual(['q', 'k', 'v'].map((p) => `${layer(1)}.self_attn.${p}_proj.bias`));
  expect(parts('layers.0.experts.gate_up')).toEqual(
    [0, 2, 3].flatMap((e) => [`${layer(0)}.mlp.experts.${e}.gate_proj.weight`, `${layer(0)}.mlp.experts.${e}.up_proj.weight`]),
  );
  expect(parts('layers.1.experts.down')).toEqual([`${layer(1)}.mlp.experts.1.down_proj.weight`]);
  expect(parts('layers.0.shared.gate_up')).toEqual([`${layer(0)}.mlp.shared_expert.gate_proj.weight`, `${layer(0)}.mlp.shared_expert.up_proj.weight`]);
  expect(parts('layers.1.shared.gate')).toEqual([`${layer(1)}.mlp.shared_expert_gate.weight`]);
  expect(parts('lm_head')).toEqual(['lm_head.weight']);
  expect(rows.get('layers.0.attn.qkv')).toMatchObject({ shape: [16, 8], dtype: 'BF16', usedAt: 'layers[0].ops[1].qkv' });
  expect(rows.get('layers.0.experts.gate_up')).toMatchObject({ shape: [3, 12, 8], dtype: 'BF16' });
  expect(rows.get('layers.1.experts.down')).toMatchObject({ shape: [1, 8, 6], dtype: 'BF16' });
  expect(rows.get('layers.1.router')).toMatchObject({ shape: [4, 8], dtype: 'F32' });
  expect(rows.get('layers.1.shared.gate')).toMatchObject({ shape: [8], dtype: 'F32' });
  for (const row of rows.values()) expect(row.parts.reduce((n, p) => n + size(p.shape), 0)).toBe(size(row.shape));
});

test('q/k norms are packed as they are, after o', () => {
  const names = planTensors(plan(true)).map((t) => t.name);
  expect(names.slice(4, 7)).toEqual(['layers.0.attn.o', 'layers.0.attn.q_norm', 'layers.0.attn.k_norm']);
  const qNorm = planTensors(plan(true)).find((t) => t.name === 'layers.1.attn.q_norm')!;
  expect(qNorm).toMatchObject({ shape: [8], dtype: 'F32', parts: [{ name: `${layer(1)}.self_attn.q_norm.weight` }] });
});

test('every dense tensor is packed exactly once, except pruned experts and the zero gate', () => {
  for (const qkNorm of [false, true]) {
    const packed = planTensors(plan(qkNorm)).flatMap((t) => t.parts.map((p) => p.name));
    expect(new Set(packed).size).toBe(packed.length);
    const expected = denseTensors(config, { qkNorm })
      .map((t) => t.name)
      .filter((name) => {
        const expert = /^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\./.exec(name);
        return !expert || kept[Number(expert[1])].includes(Number(expert[2]));
      });
    expect([...packed].sort()).toEqual([...expected].sort());
  }
  const untied = denseTensors({ ...config, shared_expert_intermediate_size: 0 });
  expect(untied.filter((t) => t.zero).map((t) => t.name)).toEqual([0, 1].map((l) => `${layer(l)}.mlp.shared_expert_gate.weight`));
});

test('training, dense and plan names never coincide (one name, one layout)', () => {
  const training = paramSpecs(config).map((s) => s.name);
  const dense = denseTensors(config, { qkNorm: true }).map((t) => t.name);
  const packed = planTensors(plan(true)).map((t) => t.name);
  const all = [...training, ...dense, ...packed];
  expect(new Set(all).size).toBe(all.length);
});

describe("Megrez2's shared expert pools", () => {
  // 3 layers, experts shared by 2: pools {0, 1} and {2}
  const megrez: ModelConfig = { ...config, num_hidden_layers: 3, experts_shared_frequency: 2 };
  const megrezPlan = (cfg: ModelConfig, keptPerLayer: number[][]) =>
    buildPlan({
      config: cfg,
      dtype: 'bf16',
      source: { dir: null, model_sha256: null, model_type: 'qwen2_moe', routing_rule: 'softmax-unnormalized' },
      strategy: { name: 'topk', k: 1, epsilon: 0.48, calib_tokens: 0 },
      kept: keptPerLayer,
      select: keptPerLayer.map(() => ({ mode: 'topk' as const, k: 1, epsilon: 0.48, k_max: 1, renormalize: false })),
      expectedExperts: keptPerLayer.map(() => 1),
      calibration: null,
    });

  test('the dense checkpoint lists a pool once, with its first layer; every layer of it names those tensors', () => {
    const names = denseTensors(megrez).map((t) => t.name);
    const expertLayers = names.flatMap((name) => /^model\.layers\.(\d+)\.mlp\.experts\./.exec(name)?.[1] ?? []);
    expect([...new Set(expertLayers)]).toEqual(['0', '2']);
    expect(expertLayers.length).toBe(2 * 3 * megrez.num_experts);
    expect(denseLayer(megrez, 1).experts[3].down.name).toBe(`${layer(0)}.mlp.experts.3.down_proj.weight`);
    expect(denseLayer(megrez, 1).experts[3].down.training).toEqual({ param: 'train.layers.0.experts.down_proj', kind: 'rows', offset: 3 * 6 });
    // and the trainer holds one set of expert variables per pool
    expect(paramSpecs(megrez).filter((s) => s.name.includes('.experts.')).map((s) => s.name.split('.')[2])).toEqual(['0', '0', '0', '2', '2', '2']);
  });

  test('the plan packs a pool once; stored parameters count it once, active parameters per token do not change', () => {
    const keptPerLayer = [[0, 2, 3], [0, 2, 3], [1]];
    const shared = megrezPlan(megrez, keptPerLayer);
    const rows = planTensors(shared).filter((t) => t.role === 'gateUp' || t.role === 'down');
    expect(rows.map((t) => `${t.layer}:${t.name}`)).toEqual(['0:layers.0.experts.gate_up', '0:layers.0.experts.down', '2:layers.2.experts.gate_up', '2:layers.2.experts.down']);
    const unshared = megrezPlan({ ...megrez, experts_shared_frequency: 1 }, keptPerLayer);
    const expert = 3 * config.hidden_size * config.moe_intermediate_size;
    expect(unshared.cost.total_params - shared.cost.total_params).toBe(3 * expert); // layer 1's three kept experts
    expect(shared.cost.active_params_per_token).toBe(unshared.cost.active_params_per_token);
    expect(shared.cost.active_weight_bytes_per_token).toBe(unshared.cost.active_weight_bytes_per_token);
    expect(() => megrezPlan(megrez, [[0, 2, 3], [0, 2], [1]])).toThrow(/layer 1 keeps experts \[0,2\] but its pool \(layer 0\) keeps \[0,2,3\]/);
  });

  test('sharing factor 1 written out is the plan and checkpoint of a config without the fields, byte for byte', () => {
    const explicit: ModelConfig = { ...config, experts_shared_frequency: 1, first_k_dense_replace: 0, pre_gate: false };
    expect(JSON.stringify(denseTensors(explicit))).toBe(JSON.stringify(denseTensors(config)));
    expect(JSON.stringify(paramSpecs(explicit))).toBe(JSON.stringify(paramSpecs(config)));
    expect(JSON.stringify(megrezPlan(explicit, kept))).toBe(JSON.stringify(plan(false)));
  });
});
