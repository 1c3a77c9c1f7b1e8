/**
 * The native addon's exports (docs/design.md §5), as a hand-written interface, and its loader. The addon is built
 * by `npm install` (scripts/build-native.js); when it is missing or does not load, the error says how to build it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import type { NativeExpertCacheSpec, RawExpertCacheStats } from './expert_cache';
import type { RawOpTimes } from './op_times';
import type { Residency } from './residency';

export type Simd = 'avx512' | 'avx2' | 'neon' | 'scalar';
export type WeightDtype = 'f32' | 'bf16' | 'f16';
export type TensorDtype = 'F32' | 'BF16' | 'F16' | 'Q8_0' | 'Q4_0' | 'Q3_A' | 'Q2_A';

/**
 * Where one tensor lives in the weights file: absolute byte offset, as the safetensors header says; its element
 * type and logical shape (weights, not bytes: a quantized tensor is stored as U8 rows of blocks).
 */
export interface NativeTensorRef {
  name: string;
  offset: number;
  dtype: TensorDtype;
  shape: number[];
}

export interface NativeSelectSpec {
  mode: 'dense' | 'topk' | 'threshold';
  k: number;
  epsilon: number;
  kMax: number;
  renormalize: boolean;
}

export interface NativeAttentionExpertsSpec {
  experts: number; // A
  headsPerExpert: number; // N_h
  router: NativeTensorRef; // [A, d] F32
  kept: number[]; // original attention expert ids of the K_a packed ones
  select: { mode: 'all' | 'topk' | 'threshold'; k: number; epsilon: number; kMax: number };
}

export interface NativeLayerSpec {
  attnNorm: NativeTensorRef; // [d] F32
  qkv: NativeTensorRef; // [(H+2KV)·hd, d]; MoA: [(K_a·N_h+2KV)·hd, d], the kept attention experts' q rows first
  qkvBias: NativeTensorRef; // [(H+2KV)·hd] F32 (MoA: as qkv)
  o: NativeTensorRef; // [d, H·hd]; MoA: [K_a, d, N_h·hd]
  /** MoA layers only (docs/design.md §12): the attention router, selection and kept attention experts. */
  attention?: NativeAttentionExpertsSpec;
  mlpNorm: NativeTensorRef; // [d] F32
  router: NativeTensorRef; // [E, d] F32
  gateUp: NativeTensorRef; // [K, 2I, d]
  down: NativeTensorRef; // [K, d, I]
  intermediate: number; // I
  kept: number[]; // original expert ids of the K packed experts
  select: NativeSelectSpec;
  pool: number; // the layer whose gateUp/down these are (Megrez2's shared expert pool; the layer itself otherwise)
  preGate: boolean; // the router reads the previous layer's mlp_norm output: routed one block early
  shared?: { gateUp: NativeTensorRef; down: NativeTensorRef; gate: NativeTensorRef; intermediate: number };
}

/** Everything the addon needs to map and run a plan; built and validated by src/runtime/spec.ts. */
export interface NativeModelSpec {
  weightsPath: string;
  dtype: WeightDtype; // embedding, LM head, shared expert
  expertDtype?: KernelDtype; // routed experts' gate_up/down (default: dtype)
  attnDtype?: KernelDtype; // attention qkv/o (default: dtype)
  config: { vocab: number; hidden: number; layers: number; heads: number; kvHeads: number; experts: number; rmsEps: number; ropeTheta: number };
  embed: NativeTensorRef; // [V, d]
  norm: NativeTensorRef; // [d] F32
  lmHead: NativeTensorRef; // [V, d] (the embed tensor when tied)
  layers: NativeLayerSpec[];
  threads: number; // 0 = all hardware threads
  expertCache?: NativeExpertCacheSpec; // absent: every expert resident in the mapping
  device?: 'cpu' | 'cuda'; // default 'cpu'; 'cuda' only when cpuInfo().cuda (src/runtime/backend.ts decides)
  profileOps?: boolean; // time each phase of every forward (read with NativeModel.opTimes); off by default
  residency?: Residency; // how the weights file is held in memory (src/runtime/residency.ts); default 'mmap'
}

export interface RoutingOverride {
  mode: 'dense' | 'topk' | 'threshold';
  k?: number;
  epsilon?: number;
}

export interface RoutingStats {
  tokens: number;
  expertCounts: Int32Array[]; // per layer [E]: selections since the last reset
  activeExperts: number; // mean experts per token per layer
  attentionExpertCounts?: Int32Array[]; // MoA models: per layer [A], attention expert selections since the last reset
  activeAttentionExperts?: number; // MoA models: mean attention experts per token per layer
}

/**
 * A pre-gated layer's routing, computed one block early (while the previous layer runs), for the last batch: the
 * hook an expert cache prefetches from (`experts` is exactly what the layer will use).
 */
export interface EarlyRouting {
  layer: number;
  experts: Int32Array; // distinct expert ids the layer uses for this batch, increasing
  count: Int32Array; // [T] experts per token
  ids: Int32Array; // [T·E]: row t's first count[t] entries are token t's experts, in selection order
  weights: Float32Array; // [T·E]
}

export interface NativeContext {
  /** Token i belongs to slots[i] at positions[i]; resolves with logits [outputRows.length, V]. */
  evaluate(tokens: Int32Array, slots: Int32Array, positions: Int32Array, outputRows: Int32Array, routing?: RoutingOverride): Promise<Float32Array>;
  clearSlot(slot: number): void;
  slotLength(slot: number): number;
  routingStats(): RoutingStats;
  resetStats(): void;
  /** The early routings of the last evaluate(), one per pre-gated layer (empty without pre_gate). */
  earlyRouting(): EarlyRouting[];
}

export interface NativeModel {
  newContext(slots: number, maxContext: number): NativeContext;
  /** residency: how the weights are held; residencyWarning: why that fell short of the spec's ('' when it did not). */
  info(): {
    threads: number; dtype: TensorDtype; expertDtype: TensorDtype; attnDtype: TensorDtype; device: 'cpu' | 'cuda'; deviceName: string;
    residency: Residency; residencyWarning: string;
  };
  /** Expert cache counters since the model was made; null when the experts are resident. */
  expertCacheStats(): RawExpertCacheStats | null;
  /** Wall time per forward phase summed since the model was made; null unless the spec had profileOps (or on CUDA). */
  opTimes(): RawOpTimes | null;
  dispose(): void;
}

export interface KernelOptions {
  impl?: 'ref' | 'fast' | 'gemv' | 'gemm';
  threads?: number;
}

export interface AdamWKernelOptions extends KernelOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay?: number; // 0 (no decay) when absent
  step: number; // t of the bias corrections 1 − β^t, ≥ 1
  gradScale?: number; // the global-norm clip's factor; 1 when absent
}

export interface GemmOptions extends KernelOptions {
  out?: Float32Array;
  count?: number;
  aIndex?: Int32Array;
  bIndex?: Int32Array;
  /** 'bf16': operands rounded to bf16 when packed, products summed in f32 (AVX-512 BF16 only: cpuInfo().bf16) */
  compute?: 'f32' | 'bf16';
}

export interface SelectRuleSpec {
  mode: 'dense' | 'topk' | 'threshold';
  k?: number;
  epsilon?: number;
  kMax?: number;
  renormalize?: boolean;
  allowed?: Uint8Array; // [E] 0 = pruned
}

/**
 * Weight types of the kernels: the plan dtypes, and for quantized matrices GGUF's Q8_0 / Q4_0 blocks (32 weights,
 * f16 scale) or the affine Q3_A / Q2_A (64 weights, f16 scale and offset); rows are whole blocks.
 */
export type KernelDtype = WeightDtype | QuantKernelDtype;
export type QuantKernelDtype = 'q8_0' | 'q4_0' | 'q3_a' | 'q2_a';

/** Bf16/f16 weights are passed as their raw bits (Uint16Array), quantized ones as their blocks (Uint8Array). */
export type KernelWeights = Float32Array | Uint16Array | Uint8Array;

export interface NativeKernels {
  linear(X: Float32Array, M: number, K: number, W: KernelWeights, dtype: KernelDtype, N: number, opts?: KernelOptions & { bias?: Float32Array }): Float32Array;
  /**
   * op(A)·op(B) over `count` entries (default 1): entry e of C [count, M, N] = op(A entry aIndex[e]) · op(B entry
   * bIndex[e]) (entry e where an index is absent), written into `out` when given (returned), else a new array.
   */
  gemm(A: Float32Array, B: Float32Array, M: number, N: number, K: number, transA: boolean, transB: boolean, opts?: GemmOptions): Float32Array;
  /** One AdamW step t = `step` of param, m, v in place (native/src/kernels/adamw.h); grad·gradScale is the gradient. */
  adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, opts: AdamWKernelOptions): void;
  /** Σ x², summed in double. */
  sumSquares(x: Float32Array, opts?: KernelOptions): number;
  /** silu(gate)·up·w[n, e] over E experts side by side (native/src/kernels/train_elementwise.h); gate, up [N, E·I], w [N, E]. */
  routedSwiglu(gate: Float32Array, up: Float32Array, w: Float32Array, N: number, E: number, I: number, opts?: KernelOptions & { out?: Float32Array }): Float32Array;
  routedSwigluBackward(
    gate: Float32Array, up: Float32Array, w: Float32Array, dy: Float32Array, N: number, E: number, I: number,
    opts?: KernelOptions & { dgate?: Float32Array; dup?: Float32Array; dw?: Float32Array },
  ): { dgate: Float32Array; dup: Float32Array; dw: Float32Array };
  /** Cross-entropy per row, logsumexp(logits[n]) − logits[n, targets[n]]: logits [N, V] → [N]. */
  softmaxXent(logits: Float32Array, targets: Int32Array, N: number, V: number, opts?: KernelOptions & { out?: Float32Array }): Float32Array;
  /** The runtime's rmsnorm writing into `out` (training). */
  rmsnormTrain(x: Float32Array, w: Float32Array, T: number, d: number, eps: number, opts?: KernelOptions & { out?: Float32Array }): Float32Array;
  /** RMSNorm's gradient: dx [T, d] and dw [d] (summed over rows). */
  rmsnormBackward(x: Float32Array, w: Float32Array, dy: Float32Array, T: number, d: number, eps: number, opts?: KernelOptions & { dx?: Float32Array; dw?: Float32Array }): { dx: Float32Array; dw: Float32Array };
  /** dlogits = dloss[n]·(softmax(logits[n]) − onehot(targets[n])) → [N, V]. */
  softmaxXentBackward(logits: Float32Array, targets: Int32Array, dloss: Float32Array, N: number, V: number, opts?: KernelOptions & { out?: Float32Array }): Float32Array;
  /**
   * Attention's softmax with the scale and causal mask folded in: row r at position r mod `period` (0: no mask)
   * keeps columns ≤ its position, y = softmax(scale·x) over them and 0 beyond → [R, C].
   */
  causalSoftmax(x: Float32Array, R: number, C: number, scale: number, period: number, opts?: KernelOptions & { out?: Float32Array }): Float32Array;
  /** Its gradient from the output: dx = scale·y ⊙ (dy − Σ dy ⊙ y) per row → [R, C]. */
  causalSoftmaxBackward(y: Float32Array, dy: Float32Array, R: number, C: number, scale: number, opts?: KernelOptions & { out?: Float32Array }): Float32Array;
  embedding(table: KernelWeights, dtype: WeightDtype, V: number, d: number, ids: Int32Array, opts?: KernelOptions): Float32Array;
  rmsnorm(x: Float32Array, w: Float32Array, T: number, d: number, eps: number, opts?: KernelOptions): Float32Array;
  rope(x: Float32Array, T: number, heads: number, hd: number, pos: Int32Array, theta: number, opts?: KernelOptions): Float32Array;
  attention(
    q: Float32Array, kcache: Float32Array, vcache: Float32Array, slots: Int32Array, positions: Int32Array,
    T: number, H: number, KV: number, hd: number, nSlots: number, maxContext: number, opts?: KernelOptions,
  ): Float32Array;
  softmax(x: Float32Array, T: number, E: number): Float32Array;
  select(p: Float32Array, T: number, E: number, rule: SelectRuleSpec): { ids: Int32Array; weights: Float32Array; count: Int32Array };
  groupByExpert(ids: Int32Array, weights: Float32Array, count: Int32Array, T: number, cap: number, E: number): { counts: Int32Array; offsets: Int32Array; rows: Int32Array; rowWeight: Float32Array };
  swiglu(gu: Float32Array, n: number, I: number, opts?: KernelOptions): Float32Array;
  moeFfn(
    x: Float32Array, T: number, d: number, I: number, gateUp: KernelWeights, down: KernelWeights, dtype: KernelDtype,
    E: number, slotOfExpert: Int32Array, offsets: Int32Array, rows: Int32Array, rowWeight: Float32Array, opts?: KernelOptions,
  ): Float32Array;
  combine(out: Float32Array, rows: Int32Array, T: number, d: number, opts?: KernelOptions): Float32Array;
  /**
   * The sampler contract (src/sampling, docs/design.md §10) in C++: one token from logits [V], the draw u(seed,
   * counter) made inside the kernel. `impl: 'ref'` runs the plain twin.
   */
  sample(logits: Float32Array, temperature: number, topP: number, seed: number, counter: number, opts?: KernelOptions): number;
  /** GGUF blocks of rows of K weights, by the runtime's `quantize_row` (tests compare src/plan/quantize.ts with it). */
  quantize(x: Float32Array, K: number, dtype: QuantKernelDtype): Uint8Array;
}

export interface NativeAddon {
  /**
   * cuda: a CUDA device is usable now; cudaBuilt: the addon links native/cuda (nvcc was found at build time);
   * cudaDevices: devices visible; cudaDevice: the first one's name.
   */
  cpuInfo(): {
    simd: Simd;
    detected: Simd;
    threads: number;
    /** AVX-512 BF16 products available to the training GEMM (compute: 'bf16'). */
    bf16: boolean;
    /** AVX-512 VNNI in use by the int8 GEMV (off with DSMOE_VNNI=0). */
    vnni: boolean;
    /** Batch sizes 1..int8GemvRows take the int8 GEMV over quantized weights (activations quantized to Q8 blocks). */
    int8GemvRows: number;
    /** Batch sizes up to gemvChunkRows stream the weights once per 4 rows (the GEMV) instead of packing them (GEMM). */
    gemvChunkRows: number;
    cuda: boolean;
    cudaBuilt: boolean;
    cudaDevices: number;
    cudaDevice?: string;
  };
  setSimd(level: Simd): Simd;
  /** For tests and measurements: batch sizes 1..rows (0–4) take the int8 GEMV; 0 keeps activations in f32. */
  setInt8GemvRows(rows: number): number;
  memoryBandwidthGBs(bytes?: number, threads?: number): number;
  peakGflops(threads?: number): number;
  /** posix_fadvise(DONTNEED) on a file: its clean cached pages are dropped (a cold start for benchmarks). */
  dropPageCache(path: string): void;
  kernels: NativeKernels;
  NativeModel: new (spec: NativeModelSpec) => NativeModel;
}

/** Where the build puts the addon (scripts/build-native.js). */
export const ADDON_PATH = path.resolve(__dirname, '..', '..', 'native', 'build', 'Release', 'dsmoe_native.node');

let cached: NativeAddon | undefined;

/** Loads the addon once; throws a UserError that says how to build it when it is missing or broken. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  if (!fs.existsSync(ADDON_PATH)) {
    throw new UserError(
      `the native runtime is not built (${ADDON_PATH} is missing): run \`npm run build:native\` ` +
        '(needs CMake ≥ 3.16 and a C++17 compiler; `node scripts/build-native.js` prints what is missing)',
    );
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = require(ADDON_PATH) as NativeAddon;
  } catch (error) {
    throw new UserError(
      `the native runtime at ${ADDON_PATH} does not load (${(error as Error).message}); rebuild it with \`npm run build:native\``,
    );
  }
  return cached;
}
