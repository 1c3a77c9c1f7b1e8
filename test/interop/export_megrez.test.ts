/**
 * Megrez2's layout (src/interop/megrez_layout.ts, megrez_architecture.ts): `dsmoe export` writes a model with shared
 * expert pools as `MegrezMoeForCausalLM` — exactly the tensor names of the vLLM/SGLang `megrez_moe` module tree,
 * spelled out here by hand, and the config fields that code reads — and importing the folder back gives the same
 * config, the same tensors and the same loss through the native runtime. What either side cannot express exactly
 * is refused with one line naming the field and its value.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors, writeSafetensors } from '../../src/checkpoint/safetensors';
import { buildTokenizer } from '../../src/data/tokenizer';
import { convertCheckpoint, DEFAULT_EPSILON } from '../../src/convert/convert_checkpoint';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { exportHf } from '../../src/interop/export_hf';
import { nextTokenLoss, referenceForward } from '../../src/model/reference';
import type { ModelConfig } from '../../src/model/config';
import { denseLayer, denseTensors } from '../../src/plan/tensor_table';
import { SparseModel } from '../../src/runtime/model';
import { randomDenseWeights, removeTempDirs, seededUniform, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const tokens = [5, 200, 31, 77, 256, 12, 140, 9, 64, 3, 250, 18];

// 4 layers, f = 2: pools at layers 0 and 2 (Megrez2's (l − first_k_dense_replace) // f · f + first_k_dense_replace)
const sharedConfig: ModelConfig = { ...tinyConfig, num_hidden_layers: 4, experts_shared_frequency: 2 };

function denseFolder(config: ModelConfig, seed = 21): string {
  const dir = tempDir('megrez-dense');
  writeDenseFolder(dir, config, randomDenseWeights(config, seed));
  return dir;
}

function readConfig(dir: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
}

function topkLogits(dir: string, k: number): Float32Array {
  const dense = readAnyDenseCheckpoint(dir);
  return referenceForward(dense, tokens, { routing: { mode: 'topk', k, renormalize: dense.normTopkProb } }).logits;
}

/** The loss `dsmoe eval` would report: convert to a top-k plan, score through the native runtime. */
async function runtimeLoss(dir: string, k: number): Promise<number> {
  const plan = tempDir('megrez-plan');
  await convertCheckpoint(readAnyDenseCheckpoint(dir), {
    outDir: plan,
    strategy: 'topk',
    k,
    epsilon: DEFAULT_EPSILON,
    dtype: 'f32',
    calibWindows: [],
    calibSource: 'test',
    renormalize: false,
  });
  const model = SparseModel.load(plan, { threads: 1 });
  try {
    return (await model.score(tokens)).loss;
  } finally {
    await model.dispose();
  }
}

describe("export of a shared-pool model in Megrez2's layout", () => {
  test('exactly the tensors of the megrez_moe module tree, and the config fields it reads', () => {
    const c = sharedConfig;
    const dir = denseFolder(c);
    const out = tempDir('megrez-out');
    const result = exportHf(dir, { outDir: out, topK: 2, dtype: 'f32' });
    expect(result.architecture).toBe('MegrezMoeForCausalLM');

    const d = c.hidden_size;
    const hd = d / c.num_attention_heads;
    const I = c.moe_intermediate_size;
    const expected = new Map<string, number[]>([
      ['model.embed_tokens.weight', [c.vocab_size, d]],
      ['model.norm.weight', [d]],
      ['lm_head.weight', [c.vocab_size, d]],
    ]);
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}`;
      expected.set(`${p}.input_layernorm.weight`, [d]).set(`${p}.post_attention_layernorm.weight`, [d]);
      for (const [x, rows] of [['q', c.num_attention_heads * hd], ['k', c.num_key_value_heads * hd], ['v', c.num_key_value_heads * hd]] as const) {
        expected.set(`${p}.self_attn.${x}_proj.weight`, [rows, d]).set(`${p}.self_attn.${x}_proj.bias`, [rows]);
      }
      expected.set(`${p}.self_attn.o_proj.weight`, [d, c.num_attention_heads * hd]);
      expected.set(`${p}.mlp.gate.weight`, [c.num_experts, d]); // every MoE layer keeps its own router
      // n_shared_experts 0: the modules exist with width 0, so their (empty) weights are written
      expected.set(`${p}.mlp.shared_experts.gate_proj.weight`, [0, d]).set(`${p}.mlp.shared_experts.up_proj.weight`, [0, d]);
      expected.set(`${p}.mlp.shared_experts.down_proj.weight`, [d, 0]);
      if (l % 2 === 0) {
        // routed experts only on each pool's first layer (init_experts); layers 1 and 3 reuse them
        for (let e = 0; e < c.num_experts; e++) {
          expected.set(`${p}.mlp.experts.${e}.gate_proj.weight`, [I, d]).set(`${p}.mlp.experts.${e}.up_proj.weight`, [I, d]);
          expected.set(`${p}.mlp.experts.${e}.down_proj.weight`, [d, I]);
        }
      }
    }
    const file = readSafetensors(path.join(out, 'model.safetensors'));
    expect([...file.header.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [name, shape] of expected) expect(file.header.tensors.get(name)!.shape).toEqual(shape);
    expect(file.header.metadata.format).toBe('pt');

    expect(readConfig(out)).toMatchObject({
      architectures: ['MegrezMoeForCausalLM'],
      model_type: 'megrez_moe',
      experts_shared_frequency: 2,
      pre_gate: false,
      first_k_dense_replace: 0,
      moe_layer_freq: 1,
      n_routed_experts: c.num_experts,
      n_shared_experts: 0,
      num_experts_per_tok: 2,
      moe_intermediate_size: I,
      topk_method: 'greedy',
      scoring_func: 'softmax',
      n_group: 1,
      topk_group: 1,
      routed_scaling_factor: 1,
      norm_topk_prob: false,
      qkv_bias: true,
      attention_bias: false,
      hidden_act: 'silu',
      tie_word_embeddings: false,
      rope_theta: c.rope_theta,
    });
  });

  test('export → import: the same config and tensors, the same logits, and the same loss through the runtime', async () => {
    const dir = denseFolder(sharedConfig);
    const out = tempDir('megrez-roundtrip');
    exportHf(dir, { outDir: out, topK: 2, dtype: 'f32' });
    const source = readAnyDenseCheckpoint(dir);
    const imported = readAnyDenseCheckpoint(out);
    expect(imported.modelType).toBe('megrez_moe');
    expect(imported.routingRule).toBe('softmax-unnormalized');
    expect(imported.config).toEqual(sharedConfig);
    for (const tensor of denseTensors(sharedConfig)) {
      if (tensor.zero) continue; // the zero shared-expert gate is no tensor of Megrez2's
      expect(Array.from(imported.get(tensor.name))).toEqual(Array.from(source.get(tensor.name)));
    }
    expect(Array.from(topkLogits(out, 2))).toEqual(Array.from(topkLogits(dir, 2)));
    const [before, after] = [await runtimeLoss(dir, 2), await runtimeLoss(out, 2)];
    expect(before).toBeGreaterThan(0);
    expect(after).toBe(before);
  }, 120_000);

  test('tied embeddings: lm_head.weight is written as the embedding (vLLM never ties it) and not read back', () => {
    const config = { ...sharedConfig, tie_word_embeddings: true };
    const dir = denseFolder(config, 4);
    const out = tempDir('megrez-tied');
    exportHf(dir, { outDir: out, topK: 2, dtype: 'f32' });
    const file = readSafetensors(path.join(out, 'model.safetensors'));
    expect(Array.from(file.get('lm_head.weight'))).toEqual(Array.from(file.get('model.embed_tokens.weight')));
    expect(readConfig(out).tie_word_embeddings).toBe(true);
    const imported = readAnyDenseCheckpoint(out);
    expect(imported.config).toEqual(config);
    expect(Array.from(topkLogits(out, 2))).toEqual(Array.from(topkLogits(dir, 2)));
  });

  test('norm_topk_prob: a renormalised model exports and imports with the renormalised rule', () => {
    const dir = denseFolder(sharedConfig, 8);
    // a Megrez2 folder that renormalises, as Megrez2-3x7B's norm_topk_prob does
    const first = tempDir('megrez-renorm-a');
    exportHf(dir, { outDir: first, topK: 2, dtype: 'f32' });
    fs.writeFileSync(path.join(first, 'config.json'), JSON.stringify({ ...readConfig(first), norm_topk_prob: true }));
    expect(readAnyDenseCheckpoint(first).routingRule).toBe('softmax-renormalized');
    const second = tempDir('megrez-renorm-b');
    expect(exportHf(first, { outDir: second, dtype: 'f32' })).toMatchObject({ architecture: 'MegrezMoeForCausalLM', normTopkProb: true, topK: 2 });
    expect(readConfig(second).norm_topk_prob).toBe(true);
    expect(Array.from(topkLogits(second, 2))).toEqual(Array.from(topkLogits(first, 2)));
  });

  test('a plan with a shared pool exports to the same folder as its dense source', async () => {
    const dir = denseFolder(sharedConfig, 13);
    const plan = tempDir('megrez-plan-src');
    await convertCheckpoint(readAnyDenseCheckpoint(dir), {
      outDir: plan,
      strategy: 'topk',
      k: 2,
      epsilon: DEFAULT_EPSILON,
      dtype: 'f32',
      calibWindows: [],
      calibSource: 'test',
      renormalize: false,
    });
    const out = tempDir('megrez-from-plan');
    expect(exportHf(plan, { outDir: out, dtype: 'f32' })).toMatchObject({ architecture: 'MegrezMoeForCausalLM', topK: 2 });
    expect(Array.from(topkLogits(out, 2))).toEqual(Array.from(topkLogits(dir, 2)));
  });
});

describe("dense first layers (first_k_dense_replace) in Megrez2's layout", () => {
  // Megrez2-Preview's layout in miniature: layer 0 a dense MLP of width 20, layers 1 and 2 one pool, pre-gated (layer 1
  // routes on the dense layer's post-attention-norm output, as the serving code does from first_k_dense_replace on).
  const c: ModelConfig = { ...tinyConfig, num_hidden_layers: 3, first_k_dense_replace: 1, intermediate_size: 20, experts_shared_frequency: 2, pre_gate: true };
  const d = c.hidden_size;
  const hd = d / c.num_attention_heads;
  const I = c.moe_intermediate_size;
  const W = 20;

  /** Megrez2's tensor names for this shape, spelled out by hand (the megrez_moe module tree). */
  function megrezShapes(qkvBias: boolean): Map<string, number[]> {
    const shapes = new Map<string, number[]>([
      ['model.embed_tokens.weight', [c.vocab_size, d]],
      ['model.norm.weight', [d]],
      ['lm_head.weight', [c.vocab_size, d]],
    ]);
    for (let l = 0; l < 3; l++) {
      const p = `model.layers.${l}`;
      shapes.set(`${p}.input_layernorm.weight`, [d]).set(`${p}.post_attention_layernorm.weight`, [d]);
      for (const [x, rows] of [['q', c.num_attention_heads * hd], ['k', c.num_key_value_heads * hd], ['v', c.num_key_value_heads * hd]] as const) {
        shapes.set(`${p}.self_attn.${x}_proj.weight`, [rows, d]);
        if (qkvBias) shapes.set(`${p}.self_attn.${x}_proj.bias`, [rows]);
      }
      shapes.set(`${p}.self_attn.o_proj.weight`, [d, c.num_attention_heads * hd]);
      if (l === 0) {
        // MegrezMoeMLP(intermediate_size): no router, no shared experts
        shapes.set(`${p}.mlp.gate_proj.weight`, [W, d]).set(`${p}.mlp.up_proj.weight`, [W, d]).set(`${p}.mlp.down_proj.weight`, [d, W]);
        continue;
      }
      shapes.set(`${p}.mlp.gate.weight`, [c.num_experts, d]);
      shapes.set(`${p}.mlp.shared_experts.gate_proj.weight`, [0, d]).set(`${p}.mlp.shared_experts.up_proj.weight`, [0, d]);
      shapes.set(`${p}.mlp.shared_experts.down_proj.weight`, [d, 0]);
      if (l === 1) {
        // the pool's first MoE layer: (1 − 1) // 2 · 2 + 1 = 1; layer 2 reuses it
        for (let e = 0; e < c.num_experts; e++) {
          shapes.set(`${p}.mlp.experts.${e}.gate_proj.weight`, [I, d]).set(`${p}.mlp.experts.${e}.up_proj.weight`, [I, d]);
          shapes.set(`${p}.mlp.experts.${e}.down_proj.weight`, [d, I]);
        }
      }
    }
    return shapes;
  }

  test('export writes the dense layer as mlp.{gate,up,down}_proj (no router, no shared experts) and says first_k_dense_replace 1', () => {
    const out = tempDir('megrez-dense-out');
    expect(exportHf(denseFolder(c), { outDir: out, topK: 2, dtype: 'f32' }).architecture).toBe('MegrezMoeForCausalLM');
    const file = readSafetensors(path.join(out, 'model.safetensors'));
    const expected = megrezShapes(true);
    expect([...file.header.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [name, shape] of expected) expect(file.header.tensors.get(name)!.shape).toEqual(shape);
    expect(readConfig(out)).toMatchObject({ first_k_dense_replace: 1, intermediate_size: W, experts_shared_frequency: 2, pre_gate: true, moe_layer_freq: 1 });
  });

  test('export → import: the same config and tensors, the same logits, and the same loss through the runtime', async () => {
    const dir = denseFolder(c, 31);
    const out = tempDir('megrez-dense-roundtrip');
    exportHf(dir, { outDir: out, topK: 2, dtype: 'f32' });
    const source = readAnyDenseCheckpoint(dir);
    const imported = readAnyDenseCheckpoint(out);
    expect(imported.config).toEqual(c);
    for (const tensor of denseTensors(c)) {
      if (tensor.zero) continue;
      expect(Array.from(imported.get(tensor.name))).toEqual(Array.from(source.get(tensor.name)));
    }
    expect(Array.from(topkLogits(out, 2))).toEqual(Array.from(topkLogits(dir, 2)));
    const [before, after] = [await runtimeLoss(dir, 2), await runtimeLoss(out, 2)];
    expect(after).toBe(before);
    // and the runtime's loss is the reference forward's on the dense checkpoint
    const reference = nextTokenLoss(topkLogits(dir, 2), tokens, c.vocab_size);
    expect(Math.abs(before - reference.sum / reference.count)).toBeLessThan(1e-5 * before);
  }, 120_000);

  test('import of a Megrez2 folder written by hand (BF16, no q/k/v biases): a dense layer 0, a pool, pre-gated', async () => {
    const dir = tempDir('megrez-dense-hand');
    const rand = seededUniform(77);
    const values = new Map<string, Float32Array>();
    const tensors = [...megrezShapes(false)].map(([name, shape]) => {
      const size = shape.reduce((a, b) => a * b, 1);
      const norm = name.endsWith('norm.weight');
      // BF16-exact values (a float32 whose low 16 bits are zero), so the import reads back exactly what was meant
      const data = Float32Array.from({ length: size }, () => {
        const v = new Float32Array([norm ? 1 + (rand() - 0.5) * 0.2 : (rand() - 0.5) * 0.8]);
        new Uint32Array(v.buffer)[0] &= 0xffff0000;
        return v[0];
      });
      values.set(name, data);
      return { name, dtype: 'BF16' as const, shape, data };
    });
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        architectures: ['MegrezMoeForCausalLM'],
        model_type: 'megrez_moe',
        vocab_size: c.vocab_size,
        hidden_size: d,
        num_hidden_layers: 3,
        num_attention_heads: c.num_attention_heads,
        num_key_value_heads: c.num_key_value_heads,
        max_position_embeddings: c.max_position_embeddings,
        rope_theta: c.rope_theta,
        rms_norm_eps: c.rms_norm_eps,
        intermediate_size: W,
        moe_intermediate_size: I,
        n_routed_experts: c.num_experts,
        n_shared_experts: 0,
        num_experts_per_tok: 2,
        first_k_dense_replace: 1,
        moe_layer_freq: 1,
        experts_shared_frequency: 2,
        pre_gate: true,
        topk_method: 'greedy',
        scoring_func: 'softmax',
        norm_topk_prob: false,
      }),
    );
    buildTokenizer({ type: 'byte', vocab_size: 257 }, '').save(dir, { modelMaxLength: c.max_position_embeddings });
    const imported = readAnyDenseCheckpoint(dir);
    expect(imported.config).toEqual(c);
    expect(Array.from(imported.get('model.layers.0.mlp.down_proj.weight'))).toEqual(Array.from(values.get('model.layers.0.mlp.down_proj.weight')!));
    // layer 2 runs the pool stored with layer 1
    expect(denseLayer(c, 2).experts[3].up.name).toBe('model.layers.1.mlp.experts.3.up_proj.weight');
    expect(Array.from(imported.get(denseLayer(c, 2).experts[3].up.name))).toEqual(Array.from(values.get('model.layers.1.mlp.experts.3.up_proj.weight')!));
    expect(Array.from(imported.get('model.layers.1.self_attn.q_proj.bias'))).toEqual(new Array(c.num_attention_heads * hd).fill(0));
    // The pre-gate is in the function (layer 1 reads the dense layer's output), and the runtime computes it.
    const logits = topkLogits(dir, 2);
    const ownInput = referenceForward({ ...imported, config: { ...c, pre_gate: false } }, tokens, { routing: { mode: 'topk', k: 2 } }).logits;
    expect(Array.from(ownInput)).not.toEqual(Array.from(logits));
    const reference = nextTokenLoss(logits, tokens, c.vocab_size);
    const loss = await runtimeLoss(dir, 2);
    expect(Math.abs(loss - reference.sum / reference.count)).toBeLessThan(1e-5 * loss);
  }, 120_000);
});

describe('what cannot cross the boundary exactly is refused, one line naming the field and its value', () => {
  test.each([
    ['pre-gated without a dense layer', { pre_gate: true }, /cannot express pre_gate true with first_k_dense_replace 0 \(Megrez2 pre-gates every layer from first_k_dense_replace on/],
    ['gated shared expert', { shared_expert_intermediate_size: 8 }, /cannot express shared_expert_intermediate_size 8 \(dsmoe scales its shared expert by sigmoid/],
  ])('export: %s', (_label, extra, message) => {
    const dir = denseFolder({ ...sharedConfig, ...extra });
    const out = tempDir('megrez-refused');
    let error: Error | undefined;
    try {
      exportHf(dir, { outDir: out, topK: 2, dtype: 'f32' });
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(message);
    expect(error?.message).not.toContain('\n');
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(false);
  });

  let exported: string;
  beforeAll(() => {
    exported = tempDir('megrez-import-src');
    exportHf(denseFolder(sharedConfig, 3), { outDir: exported, topK: 2, dtype: 'f32' });
  });

  test.each([
    [{ topk_method: 'noaux_tc' }, /topk_method "noaux_tc" \(e_score_correction_bias/],
    [{ scoring_func: 'sigmoid' }, /scoring_func "sigmoid"/],
    [{ routed_scaling_factor: 2.5 }, /routed_scaling_factor 2\.5/],
    [{ n_shared_experts: 4 }, /n_shared_experts 4 \(ungated shared experts/],
    [{ first_k_dense_replace: 1, intermediate_size: undefined }, /first_k_dense_replace 1 without intermediate_size/],
    [{ moe_layer_freq: 2 }, /moe_layer_freq 2/],
    [{ pre_gate: true }, /pre_gate true with first_k_dense_replace 0/],
    [{ n_group: 8, topk_group: 4 }, /topk_group 4 of n_group 8/],
    [{ attention_bias: true }, /attention_bias true/],
  ])('import: %j', (change, message) => {
    const dir = tempDir('megrez-import');
    fs.cpSync(exported, dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...readConfig(dir), ...change }));
    let error: Error | undefined;
    try {
      readAnyDenseCheckpoint(dir);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(message);
    expect(error?.message).toMatch(/this megrez_moe model uses .* which dsmoe cannot reproduce exactly$/);
    expect(error?.message).not.toContain('\n');
  });

  test('import: n_group = topk_group (every group eligible) and n_shared_experts null are plain top-k, read as is', () => {
    const dir = tempDir('megrez-import-ok');
    fs.cpSync(exported, dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...readConfig(dir), n_group: 4, topk_group: 4, n_shared_experts: null }));
    expect(Array.from(topkLogits(dir, 2))).toEqual(Array.from(topkLogits(exported, 2)));
  });
});
