import * as tf from '@tensorflow/tfjs';
import { attentionExperts, denseIntermediateSize, expertPoolOf, headDim, isDenseLayer, ModelConfig } from './config';
import { trainingNames as n } from '../plan/tensor_table';

/**
 * Trainable tensors in the layout fastest for training: every matrix [in, out], so y = x · W is a plain product;
 * q/k/v fused; experts side by side. Names, and how each maps onto the dense checkpoint's tensors, are
 * `trainingNames` and `denseLayer` in src/plan/tensor_table.ts; src/model/checkpoint_layout.ts converts.
 */
export type ParamMap = Map<string, tf.Variable>;

export interface ParamSpec {
  name: string;
  shape: number[];
  /** normal(0, std) when > 0; `fill` otherwise */
  std: number;
  fill: number;
  /** AdamW weight decay applies to matrices only, never to norms or biases */
  decay: boolean;
}

/** Every parameter with its shape and initialisation, in a fixed order (the order the optimizer walks). */
export function paramSpecs(config: ModelConfig): ParamSpec[] {
  const d = config.hidden_size;
  const hd = headDim(config);
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const E = config.num_experts;
  const A = attentionExperts(config);
  const I = config.moe_intermediate_size;
  const Is = config.shared_expert_intermediate_size;
  const V = config.vocab_size;
  const std = 0.02;
  // GPT-2's scaled init: each residual branch's output projection is shrunk so the residual stream's variance does
  // not grow with depth (2 branches per layer).
  const residualStd = std / Math.sqrt(2 * config.num_hidden_layers);
  const ownsExperts = (l: number) => expertPoolOf(config, l) === l; // a shared pool is one set of parameters
  const matrix = (name: string, shape: number[], s = std): ParamSpec => ({ name, shape, std: s, fill: 0, decay: true });
  const vector = (name: string, size: number, fill: number): ParamSpec => ({ name, shape: [size], std: 0, fill, decay: false });

  const specs: ParamSpec[] = [matrix(n.embed, [V, d])];
  if (!config.tie_word_embeddings) specs.push(matrix(n.lmHead, [d, V]));
  specs.push(vector(n.finalNorm, d, 1));
  for (let l = 0; l < config.num_hidden_layers; l++) {
    specs.push(
      vector(n.attnNorm(l), d, 1),
      matrix(n.qkv(l), [d, (H + 2 * KV) * hd]),
      vector(n.qkvBias(l), (H + 2 * KV) * hd, 0),
      matrix(n.o(l), [H * hd, d], residualStd),
    );
    // MoA's attention router (docs/design.md §12); the experts' q/o are column/row blocks of qkv and o above.
    if (A > 0) specs.push(matrix(n.attnRouter(l), [d, A]));
    if (isDenseLayer(config, l)) {
      // A dense MLP layer (first_k_dense_replace): no router, experts or shared expert.
      const W = denseIntermediateSize(config);
      specs.push(
        vector(n.mlpNorm(l), d, 1),
        matrix(n.mlpGate(l), [d, W]),
        matrix(n.mlpUp(l), [d, W]),
        matrix(n.mlpDown(l), [W, d], residualStd),
      );
      continue;
    }
    specs.push(
      vector(n.mlpNorm(l), d, 1),
      matrix(n.router(l), [d, E]),
    );
    if (ownsExperts(l)) {
      specs.push(
        matrix(n.expertsGate(l), [d, E * I]),
        matrix(n.expertsUp(l), [d, E * I]),
        matrix(n.expertsDown(l), [E * I, d], residualStd),
      );
    }
    if (Is > 0) {
      specs.push(
        matrix(n.sharedGate(l), [d, Is]),
        matrix(n.sharedUp(l), [d, Is]),
        matrix(n.sharedDown(l), [Is, d], residualStd),
        matrix(n.sharedExpertGate(l), [d, 1]),
      );
    }
  }
  return specs;
}

/**
 * Fresh parameters: normal(0, 0.02) matrices (output projections scaled by 1/sqrt(2L)), norms 1, biases 0.
 * tfjs draws normal samples in JavaScript from the seed, so the result is the same on every backend.
 */
export function initParams(config: ModelConfig, seed: number): ParamMap {
  const params: ParamMap = new Map();
  paramSpecs(config).forEach((spec, index) => {
    const value = tf.tidy(() =>
      spec.std > 0
        ? tf.randomNormal(spec.shape, 0, spec.std, 'float32', seed * 1000 + index)
        : tf.fill(spec.shape, spec.fill),
    );
    // Unnamed: tfjs variable names are global, and tests hold several models at once.
    params.set(spec.name, tf.variable(value, true));
    value.dispose();
  });
  return params;
}

/** Parameters from plain arrays (checkpoint load); throws when a name is missing or a size is wrong. */
export function paramsFromArrays(config: ModelConfig, arrays: Map<string, Float32Array>): ParamMap {
  const params: ParamMap = new Map();
  for (const spec of paramSpecs(config)) {
    const data = arrays.get(spec.name);
    const size = spec.shape.reduce((a, b) => a * b, 1);
    if (!data || data.length !== size) throw new Error(`parameter ${spec.name}: expected ${size} values, got ${data ? data.length : 'none'}`);
    params.set(spec.name, tf.variable(tf.tensor(data, spec.shape), true));
  }
  return params;
}

/** Copies every parameter out of the backend. */
export function paramsToArrays(params: ParamMap): Map<string, Float32Array> {
  const arrays = new Map<string, Float32Array>();
  // A copy: some backends hand out their own storage.
  for (const [name, variable] of params) arrays.set(name, Float32Array.from(variable.dataSync() as Float32Array));
  return arrays;
}

export function disposeParams(params: ParamMap): void {
  for (const variable of params.values()) variable.dispose();
}
