/**
 * Random-init plan folders, for speed benchmarks at realistic sizes (the paper's DS-MoE-1B/3B/6B shapes) without
 * training. The weights file is streamed out in chunks, so writing several GB holds a few MB in memory.
 *
 * The tokenizer is the byte tokenizer (ids 0..255 bytes, 256 <|endoftext|>); the model's vocab_size may be larger.
 * Values: matrices, routers and the shared gate ~ N(0, 0.02) (the trainer's init scale), norms 1, biases 0.
 * To write GBs quickly, normal samples come from a seeded table of 65,536 draws indexed by a seeded 32-bit
 * xorshift stream (two 16-bit indices per draw): the same seed gives the same file, and each dtype's table is
 * encoded once, so no per-element conversion runs.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ModelConfig } from '../model/config';
import { configProblems } from '../model/config';
import type { LoadedPlan, Plan, PlanClassDtypes, PlanDtype } from './plan_format';
import { readPlan } from './read_plan';
import { buildPlan, WEIGHTS_FILE } from './build_plan';
import { encodeTensor, isQuantized, tensorBytes } from './dtype';
import { StreamingSafetensorsWriter } from '../checkpoint/streaming_safetensors_writer';
import { buildTokenizer } from '../data/tokenizer';
import { planNames, planTensors, type PlanTensor } from './tensor_table';
import { writeJsonAtomic } from '../checkpoint/atomic';

export const RANDOM_INIT_STD = 0.02;
const CHUNK_ELEMENTS = 1 << 20; // 1 Mi values per write: 2–4 MB
const BYTE_VOCAB = 257; // 256 bytes + <|endoftext|>

export interface RandomPlanOptions {
  dtype: PlanDtype;
  /** Routed experts and attention projections at other storage (quantized blocks: normal draws, then quantized). */
  dtypes?: PlanClassDtypes;
  seed: number;
  k: number; // experts per token (topk), or the sizing k of threshold mode
  strategy?: 'topk' | 'threshold'; // default topk
  epsilon?: number; // threshold mode, default 0.48
  kMax?: number; // threshold mode, default E
  /** Called after each chunk of the weights file with the bytes written so far and the file's tensor bytes. */
  onProgress?: (writtenBytes: number, totalBytes: number) => void;
}

/** Writes a complete plan folder (plan.json, weights.safetensors, byte tokenizer) and returns it read back. */
export function writeRandomPlan(dir: string, config: ModelConfig, options: RandomPlanOptions): LoadedPlan {
  const problems = configProblems(config);
  if (problems.length) throw new Error(`writeRandomPlan: invalid config: ${problems.join('; ')}`);
  if (config.vocab_size < BYTE_VOCAB) {
    throw new Error(`writeRandomPlan: vocab_size ${config.vocab_size} is below the byte tokenizer's ${BYTE_VOCAB} tokens`);
  }
  const E = config.num_experts;
  if (!Number.isInteger(options.k) || options.k < 1 || options.k > E) {
    throw new Error(`writeRandomPlan: k must be an integer in 1..${E}, got ${options.k}`);
  }
  const mode = options.strategy ?? 'topk';
  const epsilon = options.epsilon ?? 0.48;
  const kMax = mode === 'topk' ? options.k : options.kMax ?? E;
  const L = config.num_hidden_layers;
  const allExperts = Array.from({ length: E }, (_, e) => e);
  const plan = buildPlan({
    config,
    dtype: options.dtype,
    dtypes: options.dtypes,
    source: {
      dir: null,
      model_sha256: null,
      model_type: 'qwen2_moe',
      routing_rule: 'softmax-unnormalized',
      random_init: { seed: options.seed, std: RANDOM_INIT_STD },
    },
    strategy: { name: mode, k: mode === 'topk' ? options.k : null, epsilon, calib_tokens: 0 },
    kept: Array.from({ length: L }, () => allExperts),
    select: Array.from({ length: L }, () => ({ mode, k: options.k, epsilon, k_max: Math.max(kMax, options.k), renormalize: false })),
    expectedExperts: Array.from({ length: L }, () => options.k),
    calibration: null,
  });

  fs.mkdirSync(dir, { recursive: true });
  writeRandomWeights(path.join(dir, WEIGHTS_FILE), plan, options.seed, options.onProgress);
  buildTokenizer({ type: 'byte', vocab_size: BYTE_VOCAB }, '').save(dir, { modelMaxLength: config.max_position_embeddings });
  writeJsonAtomic(path.join(dir, 'plan.json'), plan);
  return readPlan(dir);
}

/** What a random tensor is filled with, from its role. */
function fillOf({ role, zero }: PlanTensor): 'ones' | 'zeros' | 'normal' {
  if (zero) return 'zeros'; // a dense layer's router
  if (role === 'attnNorm' || role === 'mlpNorm' || role === 'norm') return 'ones';
  if (role === 'qkvBias') return 'zeros';
  return 'normal';
}

function writeRandomWeights(file: string, plan: Plan, seed: number, onProgress?: RandomPlanOptions['onProgress']): void {
  const tensors = planTensors(plan);
  const totalBytes = tensors.reduce((sum, spec) => sum + tensorBytes(spec.dtype, spec.shape), 0);
  let writtenBytes = 0;
  const writer = new StreamingSafetensorsWriter(file, tensors.map(({ name, storage }) => ({ name, ...storage })), {
    format: 'pt',
    producer: 'dsmoe random-init',
    seed: String(seed),
    embedding: planNames.embed,
  });
  try {
    const rng = xorshift32(seed);
    const table = normalTable(rng, RANDOM_INIT_STD); // [65536] f32
    const encoded = { F32: encodeTensor(table, 'F32'), BF16: encodeTensor(table, 'BF16'), F16: encodeTensor(table, 'F16') };
    for (const spec of tensors) {
      const count = spec.shape.reduce((a, b) => a * b, 1);
      const fill = fillOf(spec);
      for (let start = 0; start < count; start += CHUNK_ELEMENTS) {
        // CHUNK_ELEMENTS is a multiple of 64: a quantized tensor's chunks are whole blocks
        const n = Math.min(CHUNK_ELEMENTS, count - start);
        let bytes: Buffer;
        if (fill !== 'normal') {
          bytes = encodeTensor(new Float32Array(n).fill(fill === 'ones' ? 1 : 0), spec.dtype);
        } else if (isQuantized(spec.dtype)) {
          const draws = sampleChunk(rng, encoded.F32, n, 4);
          bytes = encodeTensor(new Float32Array(draws.buffer, draws.byteOffset, n), spec.dtype);
        } else {
          const dtype = spec.dtype as 'F32' | 'BF16' | 'F16';
          bytes = sampleChunk(rng, encoded[dtype], n, dtype === 'F32' ? 4 : 2);
        }
        writer.write(bytes);
        writtenBytes += bytes.byteLength;
        onProgress?.(writtenBytes, totalBytes);
      }
    }
    writer.finish();
  } catch (error) {
    writer.abort();
    throw error;
  }
}

/**
 * Bytes per millisecond this machine writes random weights at, now: `sampleBytes` of bf16 draws generated and
 * written (with fsync) to a scratch file in `dir`, which is then removed. For sizing a random plan to a time budget.
 */
export function measureRandomWriteRate(dir: string, sampleBytes = 32 << 20): number {
  fs.mkdirSync(dir, { recursive: true });
  const scratch = path.join(dir, `.write-rate-${process.pid}.tmp`);
  const rng = xorshift32(1);
  const table = encodeTensor(normalTable(rng, RANDOM_INIT_STD), 'BF16');
  const start = process.hrtime.bigint();
  const fd = fs.openSync(scratch, 'w');
  try {
    for (let written = 0; written < sampleBytes; written += CHUNK_ELEMENTS * 2) {
      fs.writeSync(fd, sampleChunk(rng, table, Math.min(CHUNK_ELEMENTS, Math.floor((sampleBytes - written) / 2)), 2));
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(scratch, { force: true });
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  return sampleBytes / Math.max(ms, 1e-3);
}

/** n values drawn from the encoded table (element size `bytesPer`), as bytes. */
function sampleChunk(rng: () => number, table: Buffer, n: number, bytesPer: number): Buffer {
  const out = Buffer.allocUnsafe(n * bytesPer);
  if (bytesPer === 4) {
    const src = new Uint32Array(table.buffer, table.byteOffset, 65536);
    const dst = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i += 2) {
      const r = rng();
      dst[i] = src[r & 0xffff];
      if (i + 1 < n) dst[i + 1] = src[r >>> 16];
    }
  } else {
    const src = new Uint16Array(table.buffer, table.byteOffset, 65536);
    const dst = new Uint16Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i += 2) {
      const r = rng();
      dst[i] = src[r & 0xffff];
      if (i + 1 < n) dst[i + 1] = src[r >>> 16];
    }
  }
  return out;
}

/** 65,536 draws of N(0, std²) by Box–Muller from `rng`. */
function normalTable(rng: () => number, std: number): Float32Array {
  const table = new Float32Array(65536);
  for (let i = 0; i < table.length; i += 2) {
    const u1 = (rng() + 1) / 4294967297; // (0, 1): log(u1) finite
    const u2 = rng() / 4294967296;
    const radius = Math.sqrt(-2 * Math.log(u1)) * std;
    table[i] = radius * Math.cos(2 * Math.PI * u2);
    table[i + 1] = radius * Math.sin(2 * Math.PI * u2);
  }
  return table;
}

/** Marsaglia's xorshift32, returning unsigned 32-bit integers; seed 0 is mapped to a fixed non-zero state. */
function xorshift32(seed: number): () => number {
  let state = (seed >>> 0) ^ 0x9e3779b9 || 0x6d2b79f5;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
}
