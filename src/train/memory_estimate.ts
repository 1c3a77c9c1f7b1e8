/**
 * Memory one data-parallel process needs to train a model with the PyTorch engine (DDP: every process holds the
 * whole model), from the model shape and the tokens of one micro-batch share. What it counts, per parameter:
 * f32 weights (4 B), f32 gradients (4 B; DDP keeps them as views of its buckets), AdamW's two f32 moments (8 B, or
 * 8/W B when `--shard-optimizer` spreads them over the W processes, ZeRO-1) — 16 B in all, bf16 autocast included
 * (it casts on the fly; the weights stay f32). Per token
 * and layer, the activations backward keeps (engines/torch/dsmoe_torch/model.py): the two f32 residual inputs of
 * the norms, the normed inputs, q/k/v before and q/k after RoPE, the attention output, the router's logits and
 * probabilities, and per expert gate, up, silu(gate), their product and the p-scaled product (5·E·I values). With
 * activation checkpointing only each layer's input is kept, plus one layer's set while it is recomputed. The
 * logits take V values per token in the compute dtype, their f32 copy and the f32 softmax gradient.
 * Not counted: the CUDA context and NCCL buffers (≈ 1 GB), allocator fragmentation, the attention scores of the
 * torch < 2.0 path (T² per head; torch ≥ 2.0 uses fused attention).
 */
import { headDim, type ModelConfig, parameterCounts } from '../model/config';

export interface TrainingMemory {
  parameters: number;
  weightsBytes: number; // f32
  gradientBytes: number; // f32 gradients (DDP's buckets are the gradients: gradient_as_bucket_view)
  optimizerBytes: number; // AdamW exp_avg, exp_avg_sq (this process's share when sharded)
  activationBytes: number;
  logitsBytes: number;
  totalBytes: number;
}

export function trainingMemoryPerProcess(
  config: ModelConfig,
  tokensPerMicroBatch: number, // this process's share: (batch_size / processes) · seq_len
  options: { bf16: boolean; activationCheckpointing: boolean; shardOptimizerOver?: number },
): TrainingMemory {
  const parameters = parameterCounts(config).total;
  const b = options.bf16 ? 2 : 4; // bytes of a matmul output
  const d = config.hidden_size;
  const hd = headDim(config);
  const q = config.num_attention_heads * hd;
  const kv = config.num_key_value_heads * hd;
  const E = config.num_experts;
  const expertWidth = E * config.moe_intermediate_size + config.shared_expert_intermediate_size;
  const perTokenLayer =
    2 * 4 * d + // f32 residual stream into each norm
    2 * d * b + // normed inputs of attention and MoE
    (q + 2 * kv + q + kv) * b + // q, k, v; q and k after RoPE
    2 * q * b + // attention output, o_proj input
    2 * 4 * E + // router logits and probabilities (f32)
    5 * expertWidth * b + // gate, up, silu(gate), product, p-scaled product
    d * b; // MoE output
  const layers = config.num_hidden_layers;
  const activationBytes = options.activationCheckpointing
    ? tokensPerMicroBatch * (layers * 4 * d + perTokenLayer)
    : tokensPerMicroBatch * layers * perTokenLayer;
  const logitsBytes = tokensPerMicroBatch * config.vocab_size * (b + 4 + 4);
  const weightsBytes = 4 * parameters;
  const gradientBytes = 4 * parameters;
  const optimizerBytes = (8 * parameters) / (options.shardOptimizerOver ?? 1);
  return {
    parameters,
    weightsBytes,
    gradientBytes,
    optimizerBytes,
    activationBytes,
    logitsBytes,
    totalBytes: weightsBytes + gradientBytes + optimizerBytes + activationBytes + logitsBytes,
  };
}

/** One line for the launcher: "≈ 27.1 GB per process: weights, gradients and AdamW 17.1 GB (9.8 B × 1.74 B parameters), …". */
export function describeTrainingMemory(memory: TrainingMemory): string {
  const gb = (bytes: number) => `${(bytes / 1e9).toFixed(1)} GB`;
  const stateBytes = memory.weightsBytes + memory.gradientBytes + memory.optimizerBytes;
  return (
    `≈ ${gb(memory.totalBytes)} per process: weights, gradients and AdamW ${gb(stateBytes)} ` +
    `(${(stateBytes / memory.parameters).toFixed(1)} B × ${(memory.parameters / 1e9).toFixed(2)} B parameters), activations ${gb(memory.activationBytes)}, logits ${gb(memory.logitsBytes)}`
  );
}
