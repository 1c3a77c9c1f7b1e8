import { UserError } from '../../src/errors';
import type { ModelConfig } from '../../src/model/config';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { packageRoot } from '../../src/data';
import {
  checkMemory,
  denseCheckpointMemory,
  describeMemory,
  formatBytes,
  servingMemory,
  torchTrainingMemory,
  totalBytes,
  trainingMemory,
} from '../../src/model/memory_estimate';
import { denseTensors } from '../../src/plan/tensor_table';
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

describe('the torch engine, per process', () => {
  const small: ModelConfig = { ...config, hidden_size: 64, num_experts: 8, moe_intermediate_size: 32, shared_expert_intermediate_size: 0, tie_word_embeddings: true };
  const options = { tokensPerProcess: 128, bf16: false, activationCheckpointing: false };

  test('weights, gradients and AdamW: 16 bytes per trained value of the tensor table, 8 + 8/W with ZeRO-1', () => {
    const trained = denseTensors(small)
      .filter((t) => t.training)
      .reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    const state = (need: ReturnType<typeof torchTrainingMemory>) => part(need, 'weights') + part(need, 'gradients') + part(need, 'AdamW');
    expect(state(torchTrainingMemory(small, options))).toBe(16 * trained);
    expect(state(torchTrainingMemory(small, { ...options, shardOptimizerOver: 8 }))).toBe(9 * trained);
    const plain = part(torchTrainingMemory(small, options), 'activations');
    expect(part(torchTrainingMemory(small, { ...options, activationCheckpointing: true }), 'activations')).toBeLessThan(plain);
    expect(part(torchTrainingMemory(small, { ...options, tokensPerProcess: 256 }), 'activations')).toBe(2 * plain);
    expect(describeMemory(torchTrainingMemory(small, options))).toMatch(/^≈ [\d.]+ MiB \(weights [\d.]+ KiB, gradients/);
  });

  const python = process.env.DSMOE_PYTHON ?? '/usr/bin/python3';
  const measure = `
import json, sys, torch
from dsmoe_torch.model import DSMoEForCausalLM
c = json.loads(sys.argv[1]); B, T = int(sys.argv[2]), int(sys.argv[3])
model = DSMoEForCausalLM(c); model.initialize(0)
weights = {p.data_ptr() for p in model.parameters()}
saved = {}
def pack(t):
    if t.data_ptr() not in weights:
        saved[t.storage().data_ptr()] = t.numel() * t.element_size()
    return t
with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    logits, probs = model(torch.randint(0, c["vocab_size"], (B, T)))
    torch.nn.functional.cross_entropy(logits.float().reshape(-1, c["vocab_size"]), torch.zeros(B * T, dtype=torch.long))
print(sum(saved.values()))
`;
  const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
  const reason = probe.error ? `${python} does not run` : probe.status !== 0 ? (probe.stderr.trim().split('\n').pop() ?? 'no torch') : null;
  if (reason) process.stderr.write(`test/model/memory_estimate: measured-activation test skipped: ${reason}\n`);

  (reason ? test.skip : test)('activations and logits within 10% of the bytes PyTorch saves for backward (f32, 8 × 16 tokens)', () => {
    const result = spawnSync(python, ['-c', measure, JSON.stringify(small), '8', '16'], {
      encoding: 'utf8',
      env: { ...process.env, PYTHONPATH: path.join(packageRoot(), 'engines', 'torch') },
    });
    expect(result.status).toBe(0);
    const measured = Number(result.stdout.trim());
    const need = torchTrainingMemory(small, options);
    const estimated = part(need, 'activations') + part(need, 'logits');
    expect(Math.abs(estimated - measured) / measured).toBeLessThan(0.1);
  }, 600_000); // importing torch takes minutes on a loaded machine
});
