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
