/**
 * Import of Hugging Face MoE folders (src/interop) against an independent forward of each architecture on the raw
 * checkpoint names (test/helpers/hf_fixtures.ts): qwen2_moe with a shared expert and biases, olmoe with q/k norm,
 * mixtral with block_sparse_moe/w1-w3 and renormalised top-k; sharded, BF16 and transformers 5 fused layouts; and
 * through `convert` into a plan whose reference forward gives the same logits.
 */
import * as fs from 'fs';
import * as path from 'path';
import { convertCheckpoint, DEFAULT_EPSILON } from '../../src/convert/convert_checkpoint';
import { layerOps } from '../../src/plan/plan_format';
import { readPlan } from '../../src/plan/read_plan';
import { planRoutingRules, planWeights } from '../../src/plan/plan_reference';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { referenceForward } from '../../src/model/reference';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';
import { hfConfigFor, hfForward, readHfFolderTensors, relativeDifference, shape, writeHfFolder, type Arch, type FixtureOptions } from '../helpers/hf_fixtures';

const tokens = [3, 250, 17, 99, 42, 7, 256, 128, 64];

afterAll(removeTempDirs);

function importedLogits(dir: string): Float32Array {
  const dense = readAnyDenseCheckpoint(dir);
  return referenceForward(dense, tokens, { routing: { mode: 'topk', k: dense.config.num_experts_per_tok, renormalize: dense.normTopkProb } }).logits;
}

const cases: [string, Arch, FixtureOptions][] = [
  ['qwen2_moe with a shared expert and q/k/v biases', 'qwen2_moe', { sharedExpert: true }],
  ['qwen2_moe without a shared expert, norm_topk_prob true', 'qwen2_moe', { normTopkProb: true }],
  ['qwen2_moe sharded, BF16, transformers 5 fused experts', 'qwen2_moe', { sharedExpert: true, sharded: true, dtype: 'BF16', fused: true }],
  ['olmoe (q/k RMSNorm over the whole projection)', 'olmoe', {}],
  ['olmoe sharded BF16', 'olmoe', { sharded: true, dtype: 'BF16' }],
  ['mixtral (block_sparse_moe, w1/w2/w3, renormalised top-k)', 'mixtral', {}],
  ['mixtral in transformers 5 layout (mlp., fused experts)', 'mixtral', { fused: true }],
];

describe('import of Hugging Face MoE folders', () => {
  test.each(cases)('%s: logits match the architecture forward', (_label, arch, options) => {
    const dir = tempDir(`hf-${arch}`);
    writeHfFolder(dir, arch, options);
    const expected = hfForward(arch, hfConfigFor(arch, options), readHfFolderTensors(dir), tokens);
    const actual = importedLogits(dir);
    expect(relativeDifference(actual, expected)).toBeLessThan(1e-5);
    const dense = readAnyDenseCheckpoint(dir);
    expect(dense.modelType).toBe(arch);
    expect(dense.routingRule).toBe(arch === 'mixtral' || options.normTopkProb ? 'softmax-renormalized' : 'softmax-unnormalized');
  });

  test('the routing rule matters: Mixtral without renormalisation gives other logits', () => {
    const dir = tempDir('hf-mixtral-rule');
    writeHfFolder(dir, 'mixtral');
    const dense = readAnyDenseCheckpoint(dir);
    const unnormalized = referenceForward(dense, tokens, { routing: { mode: 'topk', k: 2 } }).logits;
    expect(relativeDifference(unnormalized, importedLogits(dir))).toBeGreaterThan(1e-3);
  });

  test.each(['qwen2_moe', 'olmoe', 'mixtral'] as Arch[])('%s: convert records the routing rule and the plan reproduces the logits', async (arch) => {
    const dir = tempDir(`hf-convert-${arch}`);
    const options: FixtureOptions = arch === 'qwen2_moe' ? { sharedExpert: true } : {};
    writeHfFolder(dir, arch, options);
    const out = tempDir(`plan-${arch}`);
    const result = await convertCheckpoint(readAnyDenseCheckpoint(dir), {
      outDir: out,
      strategy: 'topk',
      epsilon: DEFAULT_EPSILON,
      dtype: 'f32',
      calibWindows: [],
      calibSource: 'none',
      renormalize: false,
    });
    expect(result.plan.source.model_type).toBe(arch);
    expect(result.plan.source.routing_rule).toBe(arch === 'mixtral' ? 'softmax-renormalized' : 'softmax-unnormalized');
    for (const layer of result.plan.layers) {
      expect(layerOps(layer).select).toMatchObject({ mode: 'topk', k: shape.k, renormalize: arch === 'mixtral' });
      expect(layerOps(layer).attention.q_norm !== undefined).toBe(arch === 'olmoe');
      expect(layerOps(layer).shared !== null).toBe(arch === 'qwen2_moe');
    }
    const loaded = readPlan(out, { qkNorm: true });
    const logits = referenceForward(planWeights(loaded), tokens, { routing: planRoutingRules(loaded.plan) }).logits;
    const expected = hfForward(arch, hfConfigFor(arch, options), readHfFolderTensors(dir), tokens);
    expect(relativeDifference(logits, expected)).toBeLessThan(1e-5);
    if (arch === 'olmoe') {
      // the native runtime has no q/k norm: its readPlan refuses instead of running without it
      expect(() => readPlan(out)).toThrow(/q\/k RMSNorm.*native runtime/);
    } else {
      expect(() => readPlan(out)).not.toThrow();
    }
  });
});

describe('import refuses what it cannot reproduce', () => {
  const variants: [string, Arch, (c: Record<string, unknown>) => void, RegExp][] = [
    ['RoPE scaling', 'mixtral', (c) => (c.rope_scaling = { rope_type: 'yarn', factor: 4 }), /RoPE scaling "yarn"/],
    ['OLMoE clip_qkv', 'olmoe', (c) => (c.clip_qkv = 8), /clip_qkv 8/],
    ['dense MLP layers in Qwen2-MoE', 'qwen2_moe', (c) => (c.mlp_only_layers = [1]), /dense MLP layers/],
    ['a head_dim other than hidden_size / heads', 'olmoe', (c) => (c.head_dim = 8), /head_dim 8/],
    ['another activation', 'mixtral', (c) => (c.hidden_act = 'gelu'), /hidden_act "gelu"/],
  ];
  test.each(variants)('%s', (_label, arch, change, message) => {
    const dir = tempDir('hf-refuse');
    writeHfFolder(dir, arch);
    const configPath = path.join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    change(config);
    fs.writeFileSync(configPath, JSON.stringify(config));
    expect(() => readAnyDenseCheckpoint(dir)).toThrow(message);
  });

  test('a sliding window shorter than max_position_embeddings caps the context', () => {
    const dir = tempDir('hf-window');
    writeHfFolder(dir, 'mixtral');
    const configPath = path.join(dir, 'config.json');
    fs.writeFileSync(configPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(configPath, 'utf8')), sliding_window: 16 }));
    const dense = readAnyDenseCheckpoint(dir);
    expect(dense.config.max_position_embeddings).toBe(16);
    expect(dense.importNotes?.[0]).toMatch(/sliding window 16/);
  });

  test('a missing expert names the tensor and the fused alternative', () => {
    const dir = tempDir('hf-missing');
    writeHfFolder(dir, 'mixtral', { sharded: true });
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    delete index.weight_map['model.layers.1.block_sparse_moe.experts.3.w2.weight'];
    fs.writeFileSync(indexPath, JSON.stringify(index));
    expect(() => readAnyDenseCheckpoint(dir)).toThrow(/missing tensor model\.layers\.1\.block_sparse_moe\.experts\.3\.w2\.weight/);
  });

  test('a shard outside the folder is refused', () => {
    const dir = tempDir('hf-escape');
    writeHfFolder(dir, 'olmoe', { sharded: true });
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    index.weight_map['model.norm.weight'] = '../elsewhere.safetensors';
    fs.writeFileSync(indexPath, JSON.stringify(index));
    expect(() => readAnyDenseCheckpoint(dir)).toThrow(/must be a file name inside the folder/);
  });
});
