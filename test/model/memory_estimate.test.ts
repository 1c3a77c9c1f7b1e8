import { UserError } from '../../src/errors';
import type { ModelConfig } from '../../src/model/config';
import { checkMemory, denseCheckpointMemory, formatBytes, servingMemory, totalBytes, trainingMemory } from '../../src/model/memory_estimate';
import { paramSpecs } from '../../src/model/params';

const config: ModelConfig = {
  vocab_size: 257,
  hidden_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 8,
  moe_intermediate_size: 64,
  shared_expert_intermediate_size: 32,
  num_experts_per_tok: 2,
  max_position_embeddings: 64,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

const GiB = 1024 ** 3;
const part = (need: { parts: { what: string; bytes: number }[] }, prefix: string) => need.parts.find((p) => p.what.startsWith(prefix))!.bytes;

test('training: weights, gradients and moments follow the tensors the trainer allocates', () => {
  // Independent count: the trainer's own parameter list (shapes it creates tf.Variables from).
  const elements = paramSpecs(config).reduce((sum, spec) => sum + spec.shape.reduce((a, b) => a * b, 1), 0);
  const need = trainingMemory(config, { batchSize: 16, seqLen: 64 });
  expect(part(need, 'weights')).toBe(elements * 4);
  expect(part(need, 'gradients')).toBe(elements * 4);
  expect(part(need, 'AdamW moments')).toBe(elements * 8);
  // Activations scale with the micro-batch's tokens (attention scores also with the context length).
  const activations = part(need, 'activations');
  expect(activations).toBeGreaterThan(0);
  expect(part(trainingMemory(config, { batchSize: 32, seqLen: 64 }), 'activations')).toBe(2 * activations);
  expect(totalBytes(need)).toBe(elements * 16 + activations);
});

test('serving: plan weights plus a KV cache sized as the native runtime allocates it', () => {
  const need = servingMemory(config, { weightBytes: 1000, slots: 3, maxContext: 50 });
  // native/src/model/model.cpp KvCache: k and v, each layers × slots × context × (kv_heads · head_dim) floats.
  expect(part(need, 'KV cache')).toBe(2 * (2 * 3 * 50 * (2 * 32)) * 4);
  expect(part(need, 'plan weights')).toBe(1000);
  expect(part(denseCheckpointMemory(config, 3), '3 copies')).toBe(3 * part(denseCheckpointMemory(config), 'dense'));
});

test('checkMemory passes what fits and refuses the rest in one line naming the need and the machine', () => {
  const need = { parts: [{ what: 'weights', bytes: 3 * GiB }, { what: 'nothing', bytes: 0 }, { what: 'cache', bytes: 512 * 1024 ** 2 }] };
  expect(() => checkMemory('work', need, { available: 4 * GiB, total: 8 * GiB })).not.toThrow();
  let error: unknown;
  try {
    checkMemory('work', need, { available: 2 * GiB, total: 8 * GiB });
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(UserError);
  const message = (error as Error).message;
  expect(message).not.toContain('\n');
  expect(message).toBe('work needs ≈ 3.5 GiB of memory (weights 3.0 GiB, cache 512.0 MiB); this machine has 2.0 GiB available of 8.0 GiB (DSMOE_SKIP_MEMORY_CHECK=1 skips this check)');
  process.env.DSMOE_SKIP_MEMORY_CHECK = '1';
  try {
    expect(() => checkMemory('work', need, { available: 2 * GiB, total: 8 * GiB })).not.toThrow();
  } finally {
    delete process.env.DSMOE_SKIP_MEMORY_CHECK;
  }
});

test('formatBytes', () => {
  expect(formatBytes(512)).toBe('512 bytes');
  expect(formatBytes(1536)).toBe('1.5 KiB');
  expect(formatBytes(2 ** 50 * 3)).toBe('3.0 PiB');
});
