/**
 * `dsmoe export` (src/interop/export_hf.ts): the folder holds exactly the tensors transformers' Qwen2MoeForCausalLM
 * and vLLM's Qwen2-MoE loader read, its config carries the routing, and importing it back gives identical logits
 * (F32) — from a dense folder, from a plan, and from an imported Mixtral. What Qwen2-MoE cannot express is refused.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensorsHeader } from '../../src/checkpoint/safetensors';
import { convertCheckpoint, DEFAULT_EPSILON } from '../../src/convert/convert_checkpoint';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { referenceForward } from '../../src/model/reference';
import { exportHf } from '../../src/interop/export_hf';
import { loadAnyTokenizer } from '../../src/interop/hf_tokenizer';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';
import { relativeDifference, writeHfFolder } from '../helpers/hf_fixtures';

const tokens = [5, 200, 31, 77, 256, 12, 140];

afterAll(removeTempDirs);

function denseFolder(shared = 0): string {
  const config = { ...tinyConfig, shared_expert_intermediate_size: shared };
  const dir = tempDir('dense');
  writeDenseFolder(dir, config, randomDenseWeights(config, 11));
  return dir;
}

function topkLogits(dir: string, k: number): Float32Array {
  const dense = readAnyDenseCheckpoint(dir);
  return referenceForward(dense, tokens, { routing: { mode: 'topk', k, renormalize: dense.normTopkProb } }).logits;
}

async function convertTopk(dir: string, k: number, extra: { pruneBelow?: number; calibWindows?: number[][]; strategy?: 'topk' | 'threshold' } = {}): Promise<string> {
  const out = tempDir('plan');
  await convertCheckpoint(readAnyDenseCheckpoint(dir), {
    outDir: out,
    strategy: extra.strategy ?? 'topk',
    k,
    epsilon: DEFAULT_EPSILON,
    dtype: 'f32',
    calibWindows: extra.calibWindows ?? [],
    calibSource: 'test',
    renormalize: false,
    pruneBelow: extra.pruneBelow,
  });
  return out;
}

describe('export to a Hugging Face Qwen2-MoE folder', () => {
  test('dense folder: exactly the tensors Qwen2MoeForCausalLM and vLLM load, and the config they read', () => {
    const dir = denseFolder();
    const out = tempDir('hf-out');
    const result = exportHf(dir, { outDir: out, topK: 3, dtype: 'f32' });
    expect(result.topK).toBe(3);
    for (const file of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
      expect(fs.existsSync(path.join(out, file))).toBe(true);
    }
    const header = readSafetensorsHeader(path.join(out, 'model.safetensors'));
    expect(header.metadata.format).toBe('pt');
    const c = tinyConfig;
    const hd = c.hidden_size / c.num_attention_heads;
    const expected = new Map<string, number[]>([['model.embed_tokens.weight', [c.vocab_size, c.hidden_size]], ['model.norm.weight', [c.hidden_size]], ['lm_head.weight', [c.vocab_size, c.hidden_size]]]);
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}`;
      expected.set(`${p}.input_layernorm.weight`, [c.hidden_size]).set(`${p}.post_attention_layernorm.weight`, [c.hidden_size]);
      expected.set(`${p}.self_attn.q_proj.weight`, [c.num_attention_heads * hd, c.hidden_size]).set(`${p}.self_attn.q_proj.bias`, [c.num_attention_heads * hd]);
      expected.set(`${p}.self_attn.k_proj.weight`, [c.num_key_value_heads * hd, c.hidden_size]).set(`${p}.self_attn.k_proj.bias`, [c.num_key_value_heads * hd]);
      expected.set(`${p}.self_attn.v_proj.weight`, [c.num_key_value_heads * hd, c.hidden_size]).set(`${p}.self_attn.v_proj.bias`, [c.num_key_value_heads * hd]);
      expected.set(`${p}.self_attn.o_proj.weight`, [c.hidden_size, c.num_attention_heads * hd]);
      expected.set(`${p}.mlp.gate.weight`, [c.num_experts, c.hidden_size]).set(`${p}.mlp.shared_expert_gate.weight`, [1, c.hidden_size]);
      for (let e = 0; e < c.num_experts; e++) {
        expected.set(`${p}.mlp.experts.${e}.gate_proj.weight`, [c.moe_intermediate_size, c.hidden_size]);
        expected.set(`${p}.mlp.experts.${e}.up_proj.weight`, [c.moe_intermediate_size, c.hidden_size]);
        expected.set(`${p}.mlp.experts.${e}.down_proj.weight`, [c.hidden_size, c.moe_intermediate_size]);
      }
    }
    expect([...header.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [name, shape] of expected) expect(header.tensors.get(name)!.shape).toEqual(shape);

    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      architectures: ['Qwen2MoeForCausalLM'],
      model_type: 'qwen2_moe',
      num_experts_per_tok: 3,
      norm_topk_prob: false,
      shared_expert_intermediate_size: 0,
      qkv_bias: true,
      decoder_sparse_step: 1,
      mlp_only_layers: [],
      use_sliding_window: false,
      hidden_act: 'silu',
      rope_parameters: { rope_type: 'default', rope_theta: c.rope_theta },
      rope_theta: c.rope_theta,
    });
    const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8'));
    expect(tokenizerConfig).toMatchObject({ tokenizer_class: 'PreTrainedTokenizerFast', eos_token: '<|endoftext|>', model_max_length: c.max_position_embeddings });
    expect(loadAnyTokenizer(out).encode('In the beginning')).toEqual(loadAnyTokenizer(dir).encode('In the beginning'));
  });

  test('dense → export (F32) → import: identical logits under the exported top-k; BF16 within bf16 rounding', () => {
    const dir = denseFolder(5);
    const out = tempDir('hf-f32');
    exportHf(dir, { outDir: out, topK: 2, dtype: 'f32' });
    const before = topkLogits(dir, 2);
    expect(Array.from(topkLogits(out, 2))).toEqual(Array.from(before));
    const bf16 = tempDir('hf-bf16');
    exportHf(dir, { outDir: bf16, topK: 2, dtype: 'bf16' });
    expect(readSafetensorsHeader(path.join(bf16, 'model.safetensors')).tensors.get('lm_head.weight')!.dtype).toBe('BF16');
    expect(relativeDifference(topkLogits(bf16, 2), before)).toBeLessThan(5e-2);
  });

  test('plan → export: top-k and renormalize come from the select ops; logits equal the plan reference', async () => {
    const dir = denseFolder();
    const plan = await convertTopk(dir, 3);
    const out = tempDir('hf-from-plan');
    const result = exportHf(plan, { outDir: out, dtype: 'f32' });
    expect(result).toMatchObject({ topK: 3, normTopkProb: false });
    expect(Array.from(topkLogits(out, 3))).toEqual(Array.from(topkLogits(dir, 3)));
  });

  test('imported Mixtral → export: norm_topk_prob true keeps the renormalised rule, logits identical', () => {
    const dir = tempDir('hf-mixtral');
    writeHfFolder(dir, 'mixtral');
    const out = tempDir('hf-mixtral-out');
    expect(exportHf(dir, { outDir: out, dtype: 'f32' })).toMatchObject({ topK: 2, normTopkProb: true });
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).norm_topk_prob).toBe(true);
    expect(Array.from(topkLogits(out, 2))).toEqual(Array.from(topkLogits(dir, 2)));
  });

  test('refuses what Qwen2-MoE cannot express', async () => {
    const olmoe = tempDir('hf-olmoe');
    writeHfFolder(olmoe, 'olmoe');
    expect(() => exportHf(olmoe, { outDir: tempDir('x'), dtype: 'f32' })).toThrow(/no q\/k norm/);

    const dir = denseFolder();
    const calib = [Array.from({ length: 32 }, (_, i) => (i * 37) % 256)];
    const threshold = await convertTopk(dir, 4, { strategy: 'threshold', calibWindows: calib });
    expect(() => exportHf(threshold, { outDir: tempDir('x'), dtype: 'f32' })).toThrow(/threshold routing cannot be expressed.*--top-k/);
    expect(exportHf(threshold, { outDir: tempDir('x'), topK: 2, dtype: 'f32' }).topK).toBe(2);

    const pruned = await convertTopk(dir, 1, { pruneBelow: 0.9, calibWindows: calib });
    expect(() => exportHf(pruned, { outDir: tempDir('x'), dtype: 'f32' })).toThrow(/prunes experts/);
  });
});

describe('attention experts (MoA, docs/design.md §12)', () => {
  const moa = (A: number) => ({ ...tinyConfig, attention_experts: A, heads_per_attention_expert: tinyConfig.num_attention_heads / A });

  test('more than one attention expert is refused with one line naming attention_experts: plain attention has no per-token weights', () => {
    const dir = tempDir('export-moa');
    writeDenseFolder(dir, moa(2), randomDenseWeights(moa(2), 6));
    const out = tempDir('export-moa-out');
    let message = '';
    try {
      exportHf(dir, { outDir: out, topK: 2, dtype: 'f32' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/attention_experts 2: .*cannot be exported/);
    expect(message).not.toContain('\n');
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(false);
  });

  test('one attention expert exports as plain attention (its q/o, router dropped): identical logits', () => {
    const dir = tempDir('export-moa1');
    writeDenseFolder(dir, moa(1), randomDenseWeights(moa(1), 7));
    const out = tempDir('export-moa1-out');
    exportHf(dir, { outDir: out, topK: 2, dtype: 'f32' });
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config).not.toHaveProperty('attention_experts');
    const names = [...readSafetensorsHeader(path.join(out, 'model.safetensors')).tensors.keys()];
    expect(names).toContain('model.layers.1.self_attn.q_proj.weight');
    expect(names.some((n) => n.includes('self_attn.gate') || n.includes('self_attn.experts'))).toBe(false);
    expect(Array.from(topkLogits(out, 2))).toEqual(Array.from(topkLogits(dir, 2)));
  });
});
