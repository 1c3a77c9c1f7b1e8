/**
 * How much memory a model needs before anything is allocated, so that a shape that cannot fit ends in one line
 * naming the need and what the machine has, instead of "Invalid typed array length" or the OOM killer. Train,
 * convert (reading a dense checkpoint, calibration workers), report and the runtime (a plan's weights and KV cache)
 * check with `checkMemory` before they allocate. The figures are estimates of what each path holds at its peak, in
 * the dtypes it holds them in; allocator overhead and short-lived temporaries come on top.
 */
import os from 'node:os';
import { UserError } from '../errors';
import { headDim, parameterCounts, type ModelConfig } from './config';

export interface MemoryNeed {
  /** What the memory is for, each with its size in bytes, in the order they are reported. */
  parts: { what: string; bytes: number }[];
}

export const totalBytes = (need: MemoryNeed): number => need.parts.reduce((sum, part) => sum + part.bytes, 0);

const F32 = 4;

/**
 * Training in f32 with AdamW: weights, gradients, the two moments, and the activations the backward pass keeps
 * for one micro-batch of `batchSize` sequences of `seqLen` tokens (DS-MoE trains densely, so every expert's).
 */
export function trainingMemory(config: ModelConfig, batch: { batchSize: number; seqLen: number }): MemoryNeed {
  const weights = parameterCounts(config).total * F32;
  const tokens = batch.batchSize * batch.seqLen;
  return {
    parts: [
      { what: 'weights', bytes: weights },
      { what: 'gradients', bytes: weights },
      { what: 'AdamW moments', bytes: 2 * weights },
      { what: `activations at batch ${batch.batchSize} × ${batch.seqLen} tokens`, bytes: tokens * activationFloatsPerToken(config, batch.seqLen) * F32 },
    ],
  };
}

/**
 * Floats one token keeps for the backward pass: per layer the norms, q/k/v before and after RoPE, attention scores
 * and probabilities over the context, every expert's gate, up, activation and product and its weighted output, the
 * shared expert, the router; then the logits and their softmax.
 */
function activationFloatsPerToken(config: ModelConfig, seqLen: number): number {
  const d = config.hidden_size;
  const hd = headDim(config);
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const E = config.num_experts;
  const attention = 2 * d + (H + 2 * KV) * hd + (H + KV) * hd + 2 * H * seqLen + H * hd + d;
  const experts = 2 * d + 2 * E + 4 * E * config.moe_intermediate_size + E * d;
  const shared = config.shared_expert_intermediate_size > 0 ? 4 * config.shared_expert_intermediate_size + d : 0;
  return config.num_hidden_layers * (attention + experts + shared) + 2 * config.vocab_size;
}

/**
 * One data-parallel process of the PyTorch engine (`dsmoe train --engine torch`; every process holds the whole
 * model under DDP): f32 weights and gradients (DDP's buckets are the gradients: gradient_as_bucket_view), AdamW's two
 * f32 moments, or their 1/W share when sharded over W processes (ZeRO-1), and for this process's share of one
 * micro-batch the activations backward keeps (engines/torch/dsmoe_torch/model.py) and the logits. bf16 autocast
 * casts on the fly: weights and optimizer stay f32, matmul outputs are 2 bytes. Per token and layer: the two f32
 * residual inputs of the norms, the normed inputs, q/k/v before and q/k after RoPE, the attention output (fused
 * attention: no T×T scores, which the torch < 2.0 path does keep), the router's logits and probabilities, and per
 * expert gate, up, silu(gate), their product and the p-scaled product (5·E·I values; the tfjs layout keeps a
 * weighted [E·d] output instead). With activation checkpointing only each layer's input is kept, plus one layer's
 * set while it is recomputed. Logits: V values per token in the compute dtype, their f32 copy and the f32 softmax
 * gradient. The CUDA context and NCCL buffers (≈ 1 GB) come on top.
 */
export function torchTrainingMemory(
  config: ModelConfig,
  options: { tokensPerProcess: number; bf16: boolean; activationCheckpointing: boolean; shardOptimizerOver?: number },
): MemoryNeed {
  const weights = parameterCounts(config).total * F32;
  const b = options.bf16 ? 2 : F32; // bytes of a matmul output
  const d = config.hidden_size;
  const hd = headDim(config);
  const q = config.num_attention_heads * hd;
  const kv = config.num_key_value_heads * hd;
  const E = config.num_experts;
  const expertWidth = E * config.moe_intermediate_size + config.shared_expert_intermediate_size;
  const perTokenLayer =
    2 * F32 * d + // f32 residual stream into each norm
    2 * d * b + // normed inputs of attention and MoE
    (q + 2 * kv + q + kv) * b + // q, k, v; q and k after RoPE
    2 * q * b + // attention output, o_proj input
    2 * F32 * E + // router logits and probabilities
    5 * expertWidth * b + // gate, up, silu(gate), product, p-scaled product
    d * b; // MoE output
  const layers = config.num_hidden_layers;
  const tokens = options.tokensPerProcess;
  const shards = options.shardOptimizerOver ?? 1;
  return {
    parts: [
      { what: 'weights', bytes: weights },
      { what: 'gradients', bytes: weights },
      { what: shards > 1 ? `AdamW moments (1/${shards} share)` : 'AdamW moments', bytes: (2 * weights) / shards },
      {
        what: `activations for ${tokens} tokens${options.activationCheckpointing ? ' (checkpointed)' : ''}`,
        bytes: options.activationCheckpointing ? tokens * (layers * F32 * d + perTokenLayer) : tokens * layers * perTokenLayer,
      },
      { what: 'logits', bytes: tokens * config.vocab_size * (b + 2 * F32) },
    ],
  };
}

/** "≈ 41.6 GiB (weights 16.5 GiB, gradients …)": a need as one line. */
export function describeMemory(need: MemoryNeed): string {
  const parts = need.parts.filter((part) => part.bytes > 0).map((part) => `${part.what} ${formatBytes(part.bytes)}`);
  return `≈ ${formatBytes(totalBytes(need))} (${parts.join(', ')})`;
}

/** A dense checkpoint read into memory (f32, every tensor kept, as convert, eval and report read one). */
export function denseCheckpointMemory(config: ModelConfig, copies = 1): MemoryNeed {
  const what = copies === 1 ? 'dense weights in f32' : `${copies} copies of the dense weights in f32`;
  return { parts: [{ what, bytes: copies * parameterCounts(config).total * F32 }] };
}

/**
 * Serving a plan: its weights (memory-mapped, but every expert may be touched, so they must fit in RAM) and a KV
 * cache of `slots` sequences of `maxContext` positions (f32 keys and values per layer).
 */
export function servingMemory(config: ModelConfig, options: { weightBytes: number; slots: number; maxContext: number }): MemoryNeed {
  const kv = 2 * config.num_hidden_layers * options.slots * options.maxContext * config.num_key_value_heads * headDim(config) * F32;
  return {
    parts: [
      { what: 'plan weights', bytes: options.weightBytes },
      { what: `KV cache of ${options.slots} × ${options.maxContext} positions`, bytes: kv },
    ],
  };
}

/** Bytes with a binary unit, e.g. "1.5 GiB". */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Memory the machine can give now (Linux: MemAvailable, which counts reclaimable page cache) and in all. */
export interface MachineMemory {
  available: number;
  total: number;
}

export const machineMemory = (): MachineMemory => ({ available: os.freemem(), total: os.totalmem() });

/** Set to 1 to skip the check (a machine with swap, or an estimate known to be too high). */
export const SKIP_MEMORY_CHECK_ENV = 'DSMOE_SKIP_MEMORY_CHECK';

/**
 * Refuses, with one line, work whose estimated memory exceeds what the machine has available:
 * "<subject> needs ≈ X of memory (part a, part b, …); this machine has Y available of Z".
 */
export function checkMemory(subject: string, need: MemoryNeed, machine: MachineMemory = machineMemory()): void {
  if (process.env[SKIP_MEMORY_CHECK_ENV] === '1') return;
  const total = totalBytes(need);
  if (total <= machine.available) return;
  const parts = need.parts.filter((part) => part.bytes > 0).map((part) => `${part.what} ${formatBytes(part.bytes)}`);
  throw new UserError(
    `${subject} needs ≈ ${formatBytes(total)} of memory (${parts.join(', ')}); this machine has ${formatBytes(machine.available)} available of ` +
      `${formatBytes(machine.total)} (${SKIP_MEMORY_CHECK_ENV}=1 skips this check)`,
  );
}
