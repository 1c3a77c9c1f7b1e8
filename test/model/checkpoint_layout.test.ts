/**
 * The training layout (matrices [in, out], q/k/v fused, experts side by side) against the dense checkpoint's
 * Qwen2-MoE tensors ([out, in], one per expert projection): the conversion is a permutation of values, exact in both
 * directions, and puts each value where docs/design.md §2 says.
 */
import { fromCheckpointTensors, toCheckpointTensors } from '../../src/model/checkpoint_layout';
import type { ModelConfig } from '../../src/model/config';
import { paramSpecs } from '../../src/model/params';
import { trainingNames } from '../../src/plan/tensor_table';
import { tinyConfig } from '../helpers/dense_fixtures';

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Training arrays holding 1, 2, 3, … across all parameters: every value distinct and traceable. */
function numbered(config: ModelConfig): Map<string, Float32Array> {
  let next = 1;
  return new Map(paramSpecs(config).map((spec) => [spec.name, Float32Array.from({ length: size(spec.shape) }, () => next++)]));
}

const configs: [string, ModelConfig][] = [
  ['no shared expert, untied', tinyConfig],
  ['shared expert, tied', { ...tinyConfig, shared_expert_intermediate_size: 5, tie_word_embeddings: true }],
  ['attention experts (MoA): 2 of 1 head', { ...tinyConfig, attention_experts: 2, heads_per_attention_expert: 1 }],
];

describe.each(configs)('%s', (_, config) => {
  test('training layout → dense → training layout is the identity, and dense → training → dense too', () => {
    const arrays = numbered(config);
    const dense = new Map(toCheckpointTensors(config, arrays).map((t) => [t.name, t.data]));
    const back = fromCheckpointTensors(config, (name) => dense.get(name) as Float32Array);
    expect([...back.keys()]).toEqual([...arrays.keys()]);
    for (const [name, values] of arrays) expect(back.get(name)).toEqual(values);
    const again = new Map(toCheckpointTensors(config, back).map((t) => [t.name, t.data]));
    expect(again).toEqual(dense);
  });

  test('a permutation: every training value lands in exactly one dense tensor, the zero gate holds zeros', () => {
    const arrays = numbered(config);
    const total = [...arrays.values()].reduce((n, a) => n + a.length, 0);
    const values = toCheckpointTensors(config, arrays).flatMap((t) => Array.from(t.data));
    const nonZero = values.filter((v) => v !== 0).sort((a, b) => a - b);
    expect(nonZero).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const zeroGates = config.shared_expert_intermediate_size > 0 ? 0 : config.num_hidden_layers * config.hidden_size;
    expect(values.length - nonZero.length).toBe(zeroGates);
  });
});

test('values land where docs/design.md §2 puts them', () => {
  const c = tinyConfig; // d 8, H 2, KV 1, hd 4, E 4, I 6
  const arrays = numbered(c);
  const dense = new Map(toCheckpointTensors(c, arrays).map((t) => [t.name, t.data]));
  const train = (name: string) => arrays.get(name) as Float32Array;
  const at = (name: string, row: number, col: number, cols: number) => (dense.get(name) as Float32Array)[row * cols + col];
  // k_proj [KV·hd, d] row j = column H·hd + j of the fused qkv [d, (H+2KV)·hd]
  const qkv = train(trainingNames.qkv(1));
  expect(at('model.layers.1.self_attn.k_proj.weight', 2, 5, 8)).toBe(qkv[5 * 16 + 8 + 2]);
  expect(at('model.layers.1.self_attn.v_proj.bias', 0, 3, 4)).toBe(train(trainingNames.qkvBias(1))[12 + 3]);
  // expert 2's up_proj [I, d] row j = column 2·I + j of experts.up [d, E·I]
  expect(at('model.layers.0.mlp.experts.2.up_proj.weight', 4, 7, 8)).toBe(train(trainingNames.expertsUp(0))[7 * 24 + 12 + 4]);
  // expert 3's down_proj [d, I] column j = row 3·I + j of experts.down [E·I, d]
  expect(at('model.layers.0.mlp.experts.3.down_proj.weight', 6, 1, 6)).toBe(train(trainingNames.expertsDown(0))[(18 + 1) * 8 + 6]);
  // router [E, d] = transpose of [d, E]; o_proj [d, H·hd] = transpose of [H·hd, d]; lm_head [V, d] of [d, V]
  expect(at('model.layers.1.mlp.gate.weight', 3, 2, 8)).toBe(train(trainingNames.router(1))[2 * 4 + 3]);
  expect(at('model.layers.0.self_attn.o_proj.weight', 1, 6, 8)).toBe(train(trainingNames.o(0))[6 * 8 + 1]);
  expect(at('lm_head.weight', 259, 7, 8)).toBe(train(trainingNames.lmHead)[7 * 260 + 259]);
  expect(dense.get('model.embed_tokens.weight')).toEqual(train(trainingNames.embed));
});

describe('attention experts (MoA): docs/design.md §12', () => {
  const c: ModelConfig = { ...tinyConfig, attention_experts: 2, heads_per_attention_expert: 1 }; // d 8, H 2, KV 1, hd 4

  test('a layer lists input_layernorm, gate, experts (q, q bias, o), k, v and their biases, then the MLP as before', () => {
    const names = toCheckpointTensors(c, numbered(c)).map((t) => t.name).filter((n) => n.startsWith('model.layers.0.'));
    const attn = (rest: string) => `model.layers.0.self_attn.${rest}`;
    expect(names.slice(0, 12)).toEqual([
      'model.layers.0.input_layernorm.weight',
      attn('gate.weight'),
      attn('experts.0.q_proj.weight'),
      attn('experts.0.q_proj.bias'),
      attn('experts.0.o_proj.weight'),
      attn('experts.1.q_proj.weight'),
      attn('experts.1.q_proj.bias'),
      attn('experts.1.o_proj.weight'),
      attn('k_proj.weight'),
      attn('v_proj.weight'),
      attn('k_proj.bias'),
      attn('v_proj.bias'),
    ]);
    expect(names[12]).toBe('model.layers.0.post_attention_layernorm.weight');
    expect(names.some((n) => /self_attn\.(q|o)_proj/.test(n))).toBe(false);
  });

  test('expert a holds q rows / o columns a·N_h·hd …; the router is the transpose of train.attn.router', () => {
    const arrays = numbered(c);
    const dense = new Map(toCheckpointTensors(c, arrays).map((t) => [t.name, t]));
    const train = (name: string) => arrays.get(name) as Float32Array;
    const at = (name: string, row: number, col: number) => {
      const t = dense.get(name)!;
      return t.data[row * t.shape[1] + col];
    };
    const width = 4; // N_h·hd
    expect(dense.get('model.layers.1.self_attn.experts.1.q_proj.weight')!.shape).toEqual([width, 8]);
    expect(dense.get('model.layers.1.self_attn.experts.1.o_proj.weight')!.shape).toEqual([8, width]);
    expect(dense.get('model.layers.1.self_attn.gate.weight')!.shape).toEqual([2, 8]);
    // q_proj of expert 1 [N_h·hd, d] row j = column 1·4 + j of the fused qkv [d, (H+2KV)·hd = 16]
    expect(at('model.layers.1.self_attn.experts.1.q_proj.weight', 2, 5)).toBe(train(trainingNames.qkv(1))[5 * 16 + 4 + 2]);
    expect(dense.get('model.layers.1.self_attn.experts.1.q_proj.bias')!.data[3]).toBe(train(trainingNames.qkvBias(1))[4 + 3]);
    // o_proj of expert 1 [d, N_h·hd] column j = row 1·4 + j of o [H·hd, d]
    expect(at('model.layers.0.self_attn.experts.1.o_proj.weight', 6, 1)).toBe(train(trainingNames.o(0))[(4 + 1) * 8 + 6]);
    // gate [A, d] = transpose of train.attn.router [d, A]
    expect(at('model.layers.0.self_attn.gate.weight', 1, 3)).toBe(train(trainingNames.attnRouter(0))[3 * 2 + 1]);
  });

  test('plain configs have no attention-expert tensors or parameters', () => {
    expect(paramSpecs(tinyConfig).some((s) => s.name.endsWith('attn.router'))).toBe(false);
    expect(toCheckpointTensors(tinyConfig, numbered(tinyConfig)).some((t) => t.name.includes('self_attn.gate') || t.name.includes('self_attn.experts'))).toBe(false);
  });
});
