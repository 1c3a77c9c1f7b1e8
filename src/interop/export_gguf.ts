/**
 * `dsmoe export --format gguf`: one GGUF file that llama.cpp (and ollama, LM Studio, node-llama-cpp) runs as its
 * `qwen2moe` architecture. llama.cpp's qwen2moe takes a softmax over all experts and keeps the top k without
 * renormalising — DS-MoE's top-k rule (docs/design.md §1) — with a sigmoid-gated shared expert, so a dense folder
 * or a top-k plan runs there as it is. Names and metadata follow llama.cpp's `src/llama-arch.cpp` and
 * `convert_hf_to_gguf.py` (Qwen2MoeModel); docs/interop.md lists every field.
 *
 * Refused (one-line UserError): what readExportSource refuses (threshold routing without --top-k, pruned experts,
 * q/k norms), renormalised top-k (llama.cpp's qwen2moe never renormalises), a tokenizer other than dsmoe's own,
 * a block-quantized dtype whose rows are not whole blocks of 32, and Megrez2's pre-gate and dense first layers
 * (qwen2moe routes every layer on its own input and has no dense layers). Megrez2's shared expert pools, which
 * qwen2moe cannot reference across layers, are written out in every layer that uses them: the same computation,
 * at f times the routed experts' storage (the log says how much).
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { denseNames } from '../plan/tensor_table';
import { expertPoolOf, expertPools, headDim, type ModelConfig } from '../model/config';
import type { ReferenceWeights } from '../model/reference';
import { readExportSource } from './export_source';
import { encodeGgml, QUANT_BLOCK_VALUES, type GgmlType } from './ggml_types';
import { gguf, writeGguf, GGUF_DEFAULT_ALIGNMENT, type GgufTensorSpec, type GgufValue } from './gguf_writer';
import { ggufTokenizer } from './gguf_tokenizer';

export const GGUF_DTYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'] as const;
export type GgufDtype = (typeof GGUF_DTYPES)[number];

export const GGUF_ARCHITECTURE = 'qwen2moe';

const MATRIX_TYPE: Record<GgufDtype, GgmlType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0', q4_0: 'Q4_0' };

/** llama.cpp's `enum llama_ftype` (general.file_type): what most of the file's weights are stored as. */
const FILE_TYPE: Record<GgufDtype, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 };

/**
 * llama.cpp's qwen2moe always has a shared expert; a model without one gets one of this width with zero weights,
 * which adds exactly nothing (see unusedSharedGate for its gate), stored as F32.
 */
export const ZERO_SHARED_WIDTH = 1;

/**
 * The gate of that unused shared expert. llama.cpp computes the gate's sigmoid as silu(x) / x, which is NaN at
 * x = 0 (and NaN · 0 is NaN), so a zero gate vector would poison every token; any gate that is not exactly zero
 * is multiplied by the expert's exact zero. These distinct positive weights make x = Σ w_i·m_i exactly zero
 * only for a hidden state that is exactly zero.
 */
export function unusedSharedGate(hidden: number): Float32Array {
  return Float32Array.from({ length: hidden }, (_, i) => 1 + i / hidden);
}

export interface GgufExportOptions {
  outFile: string;
  topK?: number;
  dtype: GgufDtype;
  name?: string;
  log?: (line: string) => void;
}

export interface GgufExportResult {
  file: string;
  topK: number;
  tensors: number;
  bytes: number;
  zeroSharedExpert: boolean;
}

/** One GGUF tensor: its spec and how to build its float32 values (row-major, ne reversed). */
interface PlannedTensor {
  spec: GgufTensorSpec;
  values: () => Float32Array;
}

export function exportGguf(sourceDir: string, options: GgufExportOptions): GgufExportResult {
  const log = options.log ?? (() => undefined);
  if (!(GGUF_DTYPES as readonly string[]).includes(options.dtype)) throw new UserError(`--dtype ${options.dtype}: GGUF export writes ${GGUF_DTYPES.join(', ')}`);
  if (fs.existsSync(options.outFile) && fs.statSync(options.outFile).isDirectory()) throw new UserError(`--out ${options.outFile} is a folder; give the .gguf file to write`);
  const source = readExportSource(sourceDir, options.topK);
  for (const note of source.notes) log(note);
  if (source.renormalize) {
    throw new UserError(`${sourceDir}: the model renormalises its top-k weights (norm_topk_prob, Mixtral-style); llama.cpp's qwen2moe never renormalises, so it cannot run this model as trained`);
  }
  const c = source.weights.config;
  const problems = ggufProblems(c);
  if (problems.length) throw new UserError(`${sourceDir}: llama.cpp's ${GGUF_ARCHITECTURE} cannot express ${problems.join('; ')}`);
  checkBlocks(c, options.dtype);
  const tokenizer = ggufTokenizer(sourceDir, c.vocab_size);
  const tensors = ggufTensors(source.weights, MATRIX_TYPE[options.dtype]);
  const zeroShared = c.shared_expert_intermediate_size === 0;
  const metadata: [string, GgufValue][] = [
    ...modelMetadata(c, source.topK, options.dtype, options.name ?? path.basename(path.resolve(sourceDir))),
    ...tokenizer.metadata,
  ];
  const copies = c.num_hidden_layers - expertPools(c).length;
  if (copies > 0) {
    const bytes = tensors.filter((t) => /^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$/.test(t.spec.name)).reduce((n, t) => n + ggmlBytes(t.spec), 0) / c.num_hidden_layers;
    log(
      `shared expert pools (experts_shared_frequency ${c.experts_shared_frequency}): ${GGUF_ARCHITECTURE} has one set of experts per layer, so each pool is written in each of its ` +
        `layers: ${copies} extra cop${copies === 1 ? 'y' : 'ies'} of ${(bytes / 2 ** 20).toFixed(1)} MiB (${((copies * bytes) / 2 ** 20).toFixed(1)} MiB more than storing each pool once)`,
    );
  }
  fs.mkdirSync(path.dirname(path.resolve(options.outFile)), { recursive: true });
  let done = 0;
  const layout = writeGguf(options.outFile, metadata, tensors.map((t) => t.spec), (i, spec) => {
    const bytes = encodeGgml(tensors[i].values(), spec.type);
    done++;
    if (done % 16 === 0 || done === tensors.length) log(`${done}/${tensors.length} tensors`);
    return bytes;
  });
  log(`wrote ${options.outFile}: ${tensors.length} tensors, ${(layout.fileSize / 2 ** 20).toFixed(1)} MiB, ${options.dtype}, top-${source.topK}${zeroShared ? ', zero shared expert' : ''}`);
  return { file: options.outFile, topK: source.topK, tensors: tensors.length, bytes: layout.fileSize, zeroSharedExpert: zeroShared };
}

/**
 * Megrez2 features llama.cpp's qwen2moe would compute differently, one `field value (why)` each. Shared pools are
 * not among them: writing a pool into every layer that uses it is the same computation.
 */
export function ggufProblems(c: ModelConfig): string[] {
  const problems: string[] = [];
  if ((c.first_k_dense_replace ?? 0) > 0) problems.push(`first_k_dense_replace ${c.first_k_dense_replace} (dense MLP layers; every qwen2moe layer is MoE)`);
  if (c.pre_gate === true) problems.push("pre_gate true (qwen2moe routes each layer on its own input, not the previous layer's)");
  return problems;
}

/** Bytes of one GGUF tensor at its type. */
function ggmlBytes(spec: GgufTensorSpec): number {
  const n = spec.dims.reduce((a, b) => a * b, 1);
  const perBlock: Partial<Record<GgmlType, number>> = { Q8_0: 34, Q4_0: 18 };
  const block = perBlock[spec.type];
  if (block !== undefined) return (n / QUANT_BLOCK_VALUES) * block;
  return n * (spec.type === 'F32' ? 4 : 2);
}

/** Q8_0 and Q4_0 store rows in blocks of 32 values: every matrix's row length (ne[0]) must be a whole number of blocks. */
function checkBlocks(c: ModelConfig, dtype: GgufDtype): void {
  if (dtype !== 'q8_0' && dtype !== 'q4_0') return;
  const rows: [string, number][] = [
    ['hidden_size', c.hidden_size],
    ['moe_intermediate_size', c.moe_intermediate_size],
  ];
  if (c.shared_expert_intermediate_size > 0) rows.push(['shared_expert_intermediate_size', c.shared_expert_intermediate_size]);
  const bad = rows.filter(([, n]) => n % QUANT_BLOCK_VALUES !== 0);
  if (bad.length) {
    throw new UserError(
      `--dtype ${dtype} stores rows in blocks of ${QUANT_BLOCK_VALUES} values, but ${bad.map(([k, n]) => `${k} ${n}`).join(' and ')} ${bad.length > 1 ? 'are not multiples' : 'is not a multiple'} of ${QUANT_BLOCK_VALUES}; export as f16, bf16 or f32`,
    );
  }
}

function modelMetadata(c: ModelConfig, topK: number, dtype: GgufDtype, name: string): [string, GgufValue][] {
  const a = GGUF_ARCHITECTURE;
  const shared = c.shared_expert_intermediate_size || ZERO_SHARED_WIDTH;
  return [
    ['general.architecture', gguf.str(a)],
    ['general.name', gguf.str(name)],
    ['general.file_type', gguf.u32(FILE_TYPE[dtype])],
    ['general.quantization_version', gguf.u32(2)],
    ['general.alignment', gguf.u32(GGUF_DEFAULT_ALIGNMENT)],
    [`${a}.context_length`, gguf.u32(c.max_position_embeddings)],
    [`${a}.embedding_length`, gguf.u32(c.hidden_size)],
    [`${a}.block_count`, gguf.u32(c.num_hidden_layers)],
    [`${a}.feed_forward_length`, gguf.u32(c.moe_intermediate_size)],
    [`${a}.attention.head_count`, gguf.u32(c.num_attention_heads)],
    [`${a}.attention.head_count_kv`, gguf.u32(c.num_key_value_heads)],
    [`${a}.attention.layer_norm_rms_epsilon`, gguf.f32(c.rms_norm_eps)],
    [`${a}.rope.freq_base`, gguf.f32(c.rope_theta)],
    [`${a}.rope.dimension_count`, gguf.u32(headDim(c))],
    [`${a}.expert_count`, gguf.u32(c.num_experts)],
    [`${a}.expert_used_count`, gguf.u32(topK)],
    [`${a}.expert_feed_forward_length`, gguf.u32(c.moe_intermediate_size)],
    [`${a}.expert_shared_feed_forward_length`, gguf.u32(shared)],
  ];
}

/**
 * llama.cpp's qwen2moe tensors from dense (Qwen2-MoE) weights. A row-major [out, in] matrix is ne = [in, out];
 * experts stack into [E, I, d] (gate, up) and [E, d, I] (down), ne = [d, I, E] and [I, d, E]. Norms, biases and
 * the routers stay F32 (as llama.cpp's converter keeps them); every other matrix is `matrixType`.
 */
export function ggufTensors(w: ReferenceWeights, matrixType: GgmlType): PlannedTensor[] {
  const c = w.config;
  const d = c.hidden_size;
  const hd = headDim(c);
  const E = c.num_experts;
  const I = c.moe_intermediate_size;
  const out: PlannedTensor[] = [];
  const add = (name: string, dims: number[], type: GgmlType, values: () => Float32Array) => out.push({ spec: { name, dims, type }, values });
  const dense = (name: string) => () => w.get(name);
  const stacked = (names: string[]) => () => {
    const parts = names.map((n) => w.get(n));
    const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return all;
  };
  const zeros = (n: number) => () => new Float32Array(n);

  add('token_embd.weight', [d, c.vocab_size], matrixType, dense(denseNames.embed));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const b = `blk.${l}`;
    const experts = Array.from({ length: E }, (_, e) => e);
    const pool = expertPoolOf(c, l); // a shared pool (Megrez2) is read from its first layer and written in each of its layers
    add(`${b}.attn_norm.weight`, [d], 'F32', dense(denseNames.inputNorm(l)));
    add(`${b}.attn_q.weight`, [d, c.num_attention_heads * hd], matrixType, dense(denseNames.q(l)));
    add(`${b}.attn_q.bias`, [c.num_attention_heads * hd], 'F32', dense(denseNames.qBias(l)));
    add(`${b}.attn_k.weight`, [d, c.num_key_value_heads * hd], matrixType, dense(denseNames.k(l)));
    add(`${b}.attn_k.bias`, [c.num_key_value_heads * hd], 'F32', dense(denseNames.kBias(l)));
    add(`${b}.attn_v.weight`, [d, c.num_key_value_heads * hd], matrixType, dense(denseNames.v(l)));
    add(`${b}.attn_v.bias`, [c.num_key_value_heads * hd], 'F32', dense(denseNames.vBias(l)));
    add(`${b}.attn_output.weight`, [c.num_attention_heads * hd, d], matrixType, dense(denseNames.o(l)));
    add(`${b}.ffn_norm.weight`, [d], 'F32', dense(denseNames.postAttentionNorm(l)));
    add(`${b}.ffn_gate_inp.weight`, [d, E], 'F32', dense(denseNames.router(l)));
    add(`${b}.ffn_gate_exps.weight`, [d, I, E], matrixType, stacked(experts.map((e) => denseNames.expertGate(pool, e))));
    add(`${b}.ffn_up_exps.weight`, [d, I, E], matrixType, stacked(experts.map((e) => denseNames.expertUp(pool, e))));
    add(`${b}.ffn_down_exps.weight`, [I, d, E], matrixType, stacked(experts.map((e) => denseNames.expertDown(pool, e))));
    const Is = c.shared_expert_intermediate_size;
    if (Is > 0) {
      add(`${b}.ffn_gate_inp_shexp.weight`, [d], 'F32', dense(denseNames.sharedExpertGate(l)));
      add(`${b}.ffn_gate_shexp.weight`, [d, Is], matrixType, dense(denseNames.sharedGate(l)));
      add(`${b}.ffn_up_shexp.weight`, [d, Is], matrixType, dense(denseNames.sharedUp(l)));
      add(`${b}.ffn_down_shexp.weight`, [Is, d], matrixType, dense(denseNames.sharedDown(l)));
    } else {
      const z = ZERO_SHARED_WIDTH;
      add(`${b}.ffn_gate_inp_shexp.weight`, [d], 'F32', () => unusedSharedGate(d));
      add(`${b}.ffn_gate_shexp.weight`, [d, z], 'F32', zeros(d * z));
      add(`${b}.ffn_up_shexp.weight`, [d, z], 'F32', zeros(d * z));
      add(`${b}.ffn_down_shexp.weight`, [z, d], 'F32', zeros(d * z));
    }
  }
  add('output_norm.weight', [d], 'F32', dense(denseNames.finalNorm));
  // tied embeddings: llama.cpp reuses token_embd when output.weight is absent
  if (!c.tie_word_embeddings) add('output.weight', [d, c.vocab_size], matrixType, dense(denseNames.lmHead));
  return out;
}
