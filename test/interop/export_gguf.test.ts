/**
 * `dsmoe export --format gguf` (src/interop/export_gguf.ts): the file is read back with an independent GGUF parser
 * (@huggingface/gguf) and every metadata field and tensor is compared with the source model — exactly for f32, f16
 * and bf16 (each value is the source value rounded to that type), within the block formats' error bound for q8_0
 * and q4_0. What llama.cpp's qwen2moe cannot express is refused.
 */
import * as fs from 'fs';
import * as path from 'path';
import { gguf as parseGguf, type GGUFParseOutput } from '@huggingface/gguf';
import { roundToBf16, roundToF16 } from '../../src/checkpoint/safetensors';
import { convertCheckpoint, DEFAULT_EPSILON } from '../../src/convert/convert_checkpoint';
import { buildTokenizer } from '../../src/data/tokenizer';
import { exportGguf, unusedSharedGate, type GgufDtype } from '../../src/interop/export_gguf';
import { decodeGgml, GGML_TYPE_ID, type GgmlType } from '../../src/interop/ggml_types';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { denseNames } from '../../src/plan/tensor_table';
import type { ModelConfig } from '../../src/model/config';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';
import { writeHfFolder } from '../helpers/hf_fixtures';

afterAll(removeTempDirs);

/** Rows of 32 so that the block formats apply; a BPE tokenizer smaller than vocab_size (padding tokens). */
const blockConfig: ModelConfig = {
  ...tinyConfig,
  vocab_size: 300,
  hidden_size: 32,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  moe_intermediate_size: 32,
  num_experts: 4,
};

const TEXT = 'the cat sat on the mat. the dog sat on the log. then the cat and the dog sat together. ';

function denseFolder(config: ModelConfig, bpe = true): string {
  const dir = tempDir('gguf-dense');
  writeDenseFolder(dir, config, randomDenseWeights(config, 3));
  if (bpe) buildTokenizer({ type: 'bpe', vocab_size: 280 }, TEXT.repeat(20)).save(dir, { modelMaxLength: config.max_position_embeddings });
  return dir;
}

type Parsed = GGUFParseOutput<{ strict: false }>;

async function readBack(file: string): Promise<Parsed> {
  return (await parseGguf(file, { allowLocalFile: true })) as unknown as Parsed;
}

function tensorValues(file: string, parsed: Parsed, name: string): { type: GgmlType; shape: number[]; values: Float32Array } {
  const info = parsed.tensorInfos.find((t) => t.name === name);
  if (!info) throw new Error(`no tensor ${name}`);
  const type = (Object.keys(GGML_TYPE_ID) as GgmlType[]).find((t) => GGML_TYPE_ID[t] === info.dtype)!;
  const shape = info.shape.map(Number);
  const elements = shape.reduce((a, b) => a * b, 1);
  const start = Number(parsed.tensorDataOffset + info.offset);
  const bytesPerBlock = { F32: 4, F16: 2, BF16: 2, Q8_0: 34, Q4_0: 18 }[type];
  const length = type === 'Q8_0' || type === 'Q4_0' ? (elements / 32) * bytesPerBlock : elements * bytesPerBlock;
  const fd = fs.openSync(file, 'r');
  const bytes = Buffer.alloc(length);
  fs.readSync(fd, bytes, 0, length, start);
  fs.closeSync(fd);
  return { type, shape, values: decodeGgml(bytes, type, elements) };
}

/** The llama.cpp tensor name → the source values it must hold, row-major (ne reversed). */
function expectedTensors(dir: string): Map<string, Float32Array> {
  const w = readAnyDenseCheckpoint(dir);
  const c = w.config;
  const out = new Map<string, Float32Array>();
  const cat = (names: string[]) => {
    const parts = names.map((n) => w.get(n));
    const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    parts.reduce((at, p) => (all.set(p, at), at + p.length), 0);
    return all;
  };
  out.set('token_embd.weight', w.get(denseNames.embed)).set('output_norm.weight', w.get(denseNames.finalNorm));
  if (!c.tie_word_embeddings) out.set('output.weight', w.get(denseNames.lmHead));
  const E = Array.from({ length: c.num_experts }, (_, e) => e);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const b = `blk.${l}`;
    out.set(`${b}.attn_norm.weight`, w.get(denseNames.inputNorm(l))).set(`${b}.ffn_norm.weight`, w.get(denseNames.postAttentionNorm(l)));
    for (const [x, n, bias] of [
      ['q', denseNames.q(l), denseNames.qBias(l)],
      ['k', denseNames.k(l), denseNames.kBias(l)],
      ['v', denseNames.v(l), denseNames.vBias(l)],
    ]) {
      out.set(`${b}.attn_${x}.weight`, w.get(n)).set(`${b}.attn_${x}.bias`, w.get(bias));
    }
    out.set(`${b}.attn_output.weight`, w.get(denseNames.o(l))).set(`${b}.ffn_gate_inp.weight`, w.get(denseNames.router(l)));
    out.set(`${b}.ffn_gate_exps.weight`, cat(E.map((e) => denseNames.expertGate(l, e))));
    out.set(`${b}.ffn_up_exps.weight`, cat(E.map((e) => denseNames.expertUp(l, e))));
    out.set(`${b}.ffn_down_exps.weight`, cat(E.map((e) => denseNames.expertDown(l, e))));
    const Is = c.shared_expert_intermediate_size;
    out.set(`${b}.ffn_gate_inp_shexp.weight`, Is ? w.get(denseNames.sharedExpertGate(l)) : unusedSharedGate(c.hidden_size));
    out.set(`${b}.ffn_gate_shexp.weight`, Is ? w.get(denseNames.sharedGate(l)) : new Float32Array(c.hidden_size));
    out.set(`${b}.ffn_up_shexp.weight`, Is ? w.get(denseNames.sharedUp(l)) : new Float32Array(c.hidden_size));
    out.set(`${b}.ffn_down_shexp.weight`, Is ? w.get(denseNames.sharedDown(l)) : new Float32Array(c.hidden_size));
  }
  return out;
}

/** ne (fastest first) of each llama.cpp tensor, from llama.cpp's qwen2moe create_tensor calls. */
function expectedShape(name: string, c: ModelConfig): number[] {
  const d = c.hidden_size;
  const hd = d / c.num_attention_heads;
  const Is = c.shared_expert_intermediate_size || 1;
  const leaf = name.replace(/^blk\.\d+\./, '');
  const table: Record<string, number[]> = {
    'token_embd.weight': [d, c.vocab_size],
    'output.weight': [d, c.vocab_size],
    'output_norm.weight': [d],
    'attn_norm.weight': [d],
    'ffn_norm.weight': [d],
    'attn_q.weight': [d, c.num_attention_heads * hd],
    'attn_q.bias': [c.num_attention_heads * hd],
    'attn_k.weight': [d, c.num_key_value_heads * hd],
    'attn_k.bias': [c.num_key_value_heads * hd],
    'attn_v.weight': [d, c.num_key_value_heads * hd],
    'attn_v.bias': [c.num_key_value_heads * hd],
    'attn_output.weight': [c.num_attention_heads * hd, d],
    'ffn_gate_inp.weight': [d, c.num_experts],
    'ffn_gate_exps.weight': [d, c.moe_intermediate_size, c.num_experts],
    'ffn_up_exps.weight': [d, c.moe_intermediate_size, c.num_experts],
    'ffn_down_exps.weight': [c.moe_intermediate_size, d, c.num_experts],
    'ffn_gate_inp_shexp.weight': [d],
    'ffn_gate_shexp.weight': [d, Is],
    'ffn_up_shexp.weight': [d, Is],
    'ffn_down_shexp.weight': [Is, d],
  };
  return table[leaf];
}

const MATRIX: Record<GgufDtype, GgmlType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0', q4_0: 'Q4_0' };

/** Stated tolerance per dtype: exact rounding for the float types, the block bound for Q8_0 / Q4_0. */
function expectWithin(dtype: GgmlType, got: Float32Array, want: Float32Array, name: string): void {
  expect([name, got.length]).toEqual([name, want.length]);
  if (dtype === 'F32' || dtype === 'F16' || dtype === 'BF16') {
    const round = dtype === 'F32' ? (v: number) => v : dtype === 'F16' ? roundToF16 : roundToBf16;
    for (let i = 0; i < want.length; i++) if (got[i] !== round(want[i])) throw new Error(`${name}[${i}]: ${got[i]} is not ${dtype}(${want[i]})`);
    return;
  }
  for (let b = 0; b < want.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(want[b * 32 + j]));
    const bound = dtype === 'Q8_0' ? (amax / 127) * (0.5 + 127 * 2 ** -11) : (amax / 8) * (1 + 8 * 2 ** -11);
    for (let j = 0; j < 32; j++) {
      const i = b * 32 + j;
      if (Math.abs(got[i] - want[i]) > bound) throw new Error(`${name}[${i}]: ${got[i]} vs ${want[i]}, beyond ${bound}`);
    }
  }
}

describe('export to GGUF (llama.cpp qwen2moe)', () => {
  test('metadata: architecture, shape, routing and tokenizer fields as llama.cpp reads them', async () => {
    const dir = denseFolder(blockConfig);
    const file = path.join(tempDir('gguf-meta'), 'model.gguf');
    const result = exportGguf(dir, { outFile: file, topK: 2, dtype: 'f32', name: 'tiny' });
    expect(result).toMatchObject({ topK: 2, zeroSharedExpert: true, bytes: fs.statSync(file).size });
    const parsed = await readBack(file);
    const m = parsed.metadata as Record<string, unknown>;
    const c = blockConfig;
    expect(m).toMatchObject({
      version: 3,
      'general.architecture': 'qwen2moe',
      'general.name': 'tiny',
      'general.file_type': 0,
      'general.alignment': 32,
      'qwen2moe.context_length': c.max_position_embeddings,
      'qwen2moe.embedding_length': 32,
      'qwen2moe.block_count': c.num_hidden_layers,
      'qwen2moe.attention.head_count': 4,
      'qwen2moe.attention.head_count_kv': 2,
      'qwen2moe.rope.freq_base': c.rope_theta,
      'qwen2moe.rope.dimension_count': 8,
      'qwen2moe.expert_count': 4,
      'qwen2moe.expert_used_count': 2,
      'qwen2moe.expert_feed_forward_length': 32,
      'qwen2moe.expert_shared_feed_forward_length': 1,
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'gpt-2',
      'tokenizer.ggml.add_bos_token': false,
    });
    expect(m['qwen2moe.attention.layer_norm_rms_epsilon']).toBeCloseTo(c.rms_norm_eps, 12);
    // the tokenizer: tokenizer.json's vocabulary by id, its merges in rank order, padding up to vocab_size
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const tokens = m['tokenizer.ggml.tokens'] as string[];
    const types = m['tokenizer.ggml.token_type'] as number[];
    expect(tokens.length).toBe(c.vocab_size);
    for (const [text, id] of Object.entries(json.model.vocab as Record<string, number>)) expect(tokens[id]).toBe(text);
    const eos = json.model.vocab['<|endoftext|>'];
    expect(eos).toBe(279);
    expect([m['tokenizer.ggml.eos_token_id'], types[eos], types[0], types[280], tokens[299]]).toEqual([eos, 3, 1, 5, '[PAD299]']);
    expect(m['tokenizer.ggml.merges']).toEqual(json.model.merges);
    expect((json.model.merges as string[]).length).toBeGreaterThan(10);
    // tensor infos: exactly llama.cpp's qwen2moe set, with its ne order; data offsets aligned
    const names = parsed.tensorInfos.map((t) => t.name);
    const want = expectedTensors(dir);
    expect([...names].sort()).toEqual([...want.keys()].sort());
    for (const info of parsed.tensorInfos) {
      expect([info.name, info.shape.map(Number)]).toEqual([info.name, expectedShape(info.name, c)]);
      expect(Number(info.offset) % 32).toBe(0);
    }
    expect(Number(parsed.tensorDataOffset) % 32).toBe(0);
  });

  test.each(['f32', 'f16', 'bf16', 'q8_0', 'q4_0'] as const)('%s: every tensor equals the source within the stated tolerance', async (dtype) => {
    const dir = denseFolder({ ...blockConfig, shared_expert_intermediate_size: 32, tie_word_embeddings: dtype === 'bf16' });
    const file = path.join(tempDir(`gguf-${dtype}`), 'model.gguf');
    exportGguf(dir, { outFile: file, topK: 3, dtype });
    const parsed = await readBack(file);
    expect((parsed.metadata as Record<string, unknown>)['general.file_type']).toBe({ f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 }[dtype]);
    const want = expectedTensors(dir);
    expect(parsed.tensorInfos.length).toBe(want.size);
    expect(want.has('output.weight')).toBe(dtype !== 'bf16'); // tied: llama.cpp reuses token_embd
    for (const [name, values] of want) {
      const got = tensorValues(file, parsed, name);
      const vector = got.shape.length === 1 || name.endsWith('ffn_gate_inp.weight');
      expect([name, got.type]).toEqual([name, vector ? 'F32' : MATRIX[dtype]]);
      expectWithin(got.type, got.values, values, name);
    }
  });

  test('a top-k plan exports with its k; a threshold plan needs --top-k', async () => {
    const dir = denseFolder(blockConfig);
    const out = tempDir('gguf-plan');
    await convertCheckpoint(readAnyDenseCheckpoint(dir), {
      outDir: out,
      strategy: 'topk',
      k: 3,
      epsilon: DEFAULT_EPSILON,
      dtype: 'bf16',
      calibWindows: [],
      calibSource: 'test',
      renormalize: false,
    });
    const file = path.join(tempDir('gguf-plan-out'), 'plan.gguf');
    expect(exportGguf(out, { outFile: file, dtype: 'bf16' }).topK).toBe(3);
    const parsed = await readBack(file);
    expect((parsed.metadata as Record<string, unknown>)['qwen2moe.expert_used_count']).toBe(3);
    // a bf16 plan exported as bf16 is lossless: the values are the plan's
    const want = expectedTensors(dir);
    const got = tensorValues(file, parsed, 'blk.1.ffn_down_exps.weight');
    expectWithin('BF16', got.values, want.get('blk.1.ffn_down_exps.weight')!, 'blk.1.ffn_down_exps.weight');

    const threshold = tempDir('gguf-threshold');
    const calib = [Array.from({ length: 32 }, (_, i) => (i * 37) % 256)];
    await convertCheckpoint(readAnyDenseCheckpoint(dir), {
      outDir: threshold,
      strategy: 'threshold',
      k: 4,
      epsilon: DEFAULT_EPSILON,
      dtype: 'f32',
      calibWindows: calib,
      calibSource: 'test',
      renormalize: false,
    });
    expect(() => exportGguf(threshold, { outFile: file, dtype: 'f32' })).toThrow(/threshold routing cannot be expressed.*--top-k/);
  });

  test('refuses what llama.cpp qwen2moe cannot express, naming the field', () => {
    const small = denseFolder(tinyConfig, false);
    const file = path.join(tempDir('gguf-refuse'), 'x.gguf');
    expect(() => exportGguf(small, { outFile: file, dtype: 'q8_0' })).toThrow(/hidden_size 8 and moe_intermediate_size 6 are not multiples of 32/);
    expect(() => exportGguf(small, { outFile: file, dtype: 'f32', topK: 9 })).toThrow(/--top-k must be an integer in 1\.\.4/);
    const mixtral = tempDir('gguf-mixtral');
    writeHfFolder(mixtral, 'mixtral');
    expect(() => exportGguf(mixtral, { outFile: file, dtype: 'f32' })).toThrow(/renormalises.*never renormalises/);
    const olmoe = tempDir('gguf-olmoe');
    writeHfFolder(olmoe, 'olmoe');
    expect(() => exportGguf(olmoe, { outFile: file, dtype: 'f32' })).toThrow(/q and k/);
    expect(() => exportGguf(small, { outFile: path.dirname(file), dtype: 'f32' })).toThrow(/is a folder/);
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe("Megrez2's architecture in GGUF", () => {
  test('shared expert pools are written in every layer that uses them (qwen2moe has one set per layer), and the log states the cost', async () => {
    const config: ModelConfig = { ...blockConfig, num_hidden_layers: 4, experts_shared_frequency: 2 }; // pools at layers 0 and 2
    const dir = denseFolder(config);
    const file = path.join(tempDir('gguf-pools'), 'model.gguf');
    const lines: string[] = [];
    exportGguf(dir, { outFile: file, topK: 2, dtype: 'f32', log: (line) => lines.push(line) });
    const parsed = await readBack(file);
    const source = readAnyDenseCheckpoint(dir);
    for (const [l, pool] of [[0, 0], [1, 0], [2, 2], [3, 2]]) {
      for (const [leaf, part] of [['gate', 'gate_proj'], ['up', 'up_proj'], ['down', 'down_proj']]) {
        // the pool's experts, stored once in the dense folder under its first layer's names, spelled out here
        const names = [0, 1, 2, 3].map((e) => `model.layers.${pool}.mlp.experts.${e}.${part}.weight`);
        const want = new Float32Array(names.flatMap((n) => Array.from(source.get(n))));
        expect(Array.from(tensorValues(file, parsed, `blk.${l}.ffn_${leaf}_exps.weight`).values)).toEqual(Array.from(want));
      }
    }
    // 2 extra copies of one layer's 4 experts × 3 matrices × 32 × 32 f32 = 48 KiB each
    expect(lines.join('\n')).toMatch(/shared expert pools \(experts_shared_frequency 2\): .* 2 extra copies of 0\.0 MiB \(0\.1 MiB more than storing each pool once\)/);
  });

  test.each([
    ['a dense first layer', { num_hidden_layers: 3, first_k_dense_replace: 1 }, /llama\.cpp's qwen2moe cannot express first_k_dense_replace 1 \(dense MLP layers; every qwen2moe layer is MoE\)$/],
    ['pre-gated routing', { pre_gate: true }, /llama\.cpp's qwen2moe cannot express pre_gate true \(qwen2moe routes each layer on its own input/],
  ])('refuses %s in one line naming the field', (_label, extra, message) => {
    const dir = denseFolder({ ...blockConfig, ...extra }, false);
    const file = path.join(tempDir('gguf-megrez-refused'), 'x.gguf');
    let error: Error | undefined;
    try {
      exportGguf(dir, { outFile: file, topK: 2, dtype: 'f32' });
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(message);
    expect(error?.message).not.toContain('\n');
    expect(fs.existsSync(file)).toBe(false);
  });
});

test('a header larger than the writer’s first 64 KiB buffer (a 32k-token vocabulary) reads back intact', async () => {
  const config = { ...blockConfig, vocab_size: 32000 };
  const dir = denseFolder(config);
  const file = path.join(tempDir('gguf-big-header'), 'model.gguf');
  exportGguf(dir, { outFile: file, dtype: 'f16', topK: 2 });
  const parsed = await readBack(file);
  const tokens = (parsed.metadata as Record<string, unknown>)['tokenizer.ggml.tokens'] as string[];
  expect(Number(parsed.tensorDataOffset)).toBeGreaterThan(65536);
  expect(tokens.length).toBe(32000);
  expect(tokens[31999]).toBe('[PAD31999]');
  const want = expectedTensors(dir);
  for (const name of ['token_embd.weight', 'output.weight', 'blk.1.ffn_down_exps.weight']) {
    expectWithin('F16', tensorValues(file, parsed, name).values, want.get(name)!, name);
  }
});
