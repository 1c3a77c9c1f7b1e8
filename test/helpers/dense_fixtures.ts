/** Shared fixtures of the convert and reference tests: random dense models and dense checkpoint folders. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { denseNames, denseTensors } from '../../src/plan/tensor_table';
import { writeSafetensors } from '../../src/checkpoint/safetensors';
import { toHfConfig, type ModelConfig } from '../../src/model/config';
import { buildTokenizer } from '../../src/data/tokenizer';

export const tinyConfig: ModelConfig = {
  vocab_size: 260,
  hidden_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  num_experts: 4,
  moe_intermediate_size: 6,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 64,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

/** mulberry32: a small seeded generator of uniforms in [0, 1). */
export function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every dense tensor (HF names) with its shape, in the checkpoint's order (the table's, src/plan/tensor_table.ts). */
export function denseShapes(config: ModelConfig): [string, number[]][] {
  return denseTensors(config).map((tensor) => [tensor.name, tensor.shape]);
}

/** Random weights: matrices uniform in ±scale·sqrt(3) (std = scale), norms near 1, small biases. */
export function randomDenseWeights(config: ModelConfig, seed: number, scale = 0.3): Map<string, Float32Array> {
  const rand = seededUniform(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of denseShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    const isNorm = name.endsWith('layernorm.weight') || name === denseNames.finalNorm;
    for (let i = 0; i < size; i++) {
      const u = (rand() * 2 - 1) * Math.sqrt(3);
      values[i] = isNorm ? 1 + 0.1 * u : name.endsWith('.bias') ? 0.05 * u : scale * u;
    }
    weights.set(name, values);
  }
  return weights;
}

export function weightsSource(config: ModelConfig, weights: Map<string, Float32Array>) {
  return {
    config,
    get: (name: string) => {
      const w = weights.get(name);
      if (!w) throw new Error(`no tensor ${name}`);
      return w;
    },
  };
}

const created: string[] = [];

/** A fresh temporary folder, removed by `removeTempDirs` (each test file calls it in afterAll). */
export function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dsmoe-${label}-`));
  created.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of created.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** A dense checkpoint folder (docs/design.md §2) holding `weights`, with a byte tokenizer. */
export function writeDenseFolder(dir: string, config: ModelConfig, weights: Map<string, Float32Array>): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = denseShapes(config).map(([name, shape]) => ({ name, dtype: 'F32' as const, shape, data: weights.get(name)! }));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toHfConfig(config, { dsmoe: { routing: 'dense' } }), null, 2));
  buildTokenizer({ type: 'byte', vocab_size: 257 }, '').save(dir, { modelMaxLength: config.max_position_embeddings });
}
