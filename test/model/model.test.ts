import * as tf from '@tensorflow/tfjs';
import { ModelConfig, splitExperts } from '../../src/model/config';
import { toCheckpointTensors, fromCheckpointTensors } from '../../src/model/checkpoint_layout';
import { plainMatMul } from '../../src/model/matmul';
import { MoEModel, oneHotRows, type RoutingOptions } from '../../src/model/model';
import { expertsMlp, topKMask } from '../../src/model/moe';
import { initParams, paramSpecs, paramsFromArrays, paramsToArrays, disposeParams } from '../../src/model/params';
import { referenceForward } from '../../src/model/reference';
import { applyRope, ropeTables } from '../../src/model/rope';
import { mutualInformationLoss, routerZLoss, switchBalanceLoss } from '../../src/model/routing_losses';
import { mutualInformationLossRef, referenceTrainingLoss, routerZLossRef, switchBalanceLossRef } from '../../src/model/reference_losses';
import { causalSelfAttention, groupedCausalMask } from '../../src/model/attention';
import { selectBackend } from '../../src/train/backend';


/** Normalised squared error Σ(a−b)²/Σa² (ggml's test-backend-ops measure). */
function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += a[i] ** 2;
  }
  return num / Math.max(den, 1e-30);
}

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

const scalar = (t: tf.Tensor) => t.dataSync()[0];

// Every test runs on both backends the trainer uses here (tfjs-core's ALL_ENVS habit): wasm kernels differ.
describe.each(['cpu', 'wasm'] as const)('%s backend', (backend) => {
  beforeAll(async () => {
    await selectBackend(backend);
  });

  describe('mutual-information loss', () => {
    const E = 4;
    test('uniform routing gives 0', () => {
      expect(scalar(mutualInformationLoss(tf.fill([6, E], 1 / E) as tf.Tensor2D))).toBeCloseTo(0, 6);
    });
    test('balanced one-hot routing gives −log E', () => {
      const probs = oneHotRows(Int32Array.from([0, 1, 2, 3, 0, 1, 2, 3]), E);
      expect(scalar(mutualInformationLoss(probs))).toBeCloseTo(-Math.log(E), 6);
    });
    test('collapsed routing (every token on one expert) gives 0', () => {
      const probs = oneHotRows(Int32Array.from([2, 2, 2, 2, 2]), E);
      expect(scalar(mutualInformationLoss(probs))).toBeCloseTo(0, 6);
    });
    test('gradient with respect to router logits matches central finite differences', () => {
      const n = 5;
      const logits = randomArray(n * E, 7, 2);
      const f = (x: tf.Tensor) => mutualInformationLoss(tf.softmax(x) as tf.Tensor2D);
      const grad = tf.grad(f)(tf.tensor2d(logits, [n, E])).dataSync();
      // Float64 finite differences of the same formula (float32 steps would drown the signal).
      const loss64 = (x: Float64Array) => {
        const p = Array.from({ length: n }, (_, r) => {
          const row = Array.from(x.subarray(r * E, (r + 1) * E));
          const m = Math.max(...row);
          const ex = row.map((v) => Math.exp(v - m));
          const s = ex.reduce((a, b) => a + b, 0);
          return ex.map((v) => v / s);
        });
        const h = (q: number[]) => -q.reduce((a, v) => a + v * Math.log(v), 0);
        const mean = Array.from({ length: E }, (_, e) => p.reduce((a, row) => a + row[e], 0) / n);
        return -h(mean) + p.reduce((a, row) => a + h(row), 0) / n;
      };
      const x = Float64Array.from(logits);
      const eps = 1e-5;
      for (let i = 0; i < x.length; i++) {
        const up = x.slice();
        const down = x.slice();
        up[i] += eps;
        down[i] -= eps;
        const numeric = (loss64(up) - loss64(down)) / (2 * eps);
        expect(Math.abs(grad[i] - numeric)).toBeLessThan(1e-4);
      }
    });
  });

  describe('switch balance loss', () => {
    test('is 1 for perfectly balanced routing and E for collapsed routing', () => {
      const balanced = oneHotRows(Int32Array.from([0, 1, 2, 3]), 4);
      expect(scalar(switchBalanceLoss(balanced, balanced))).toBeCloseTo(1, 6);
      const collapsed = oneHotRows(Int32Array.from([1, 1, 1, 1]), 4);
      expect(scalar(switchBalanceLoss(collapsed, collapsed))).toBeCloseTo(4, 6);
    });
    test('top-k mask keeps the k largest, ties to the lower index', () => {
      const mask = topKMask(tf.tensor2d([0.1, 0.4, 0.4, 0.1, 0.7, 0.1, 0.1, 0.1], [2, 4]), 2).dataSync();
      expect(Array.from(mask)).toEqual([0, 1, 1, 0, 1, 1, 0, 0]);
    });
  });

  /** Central differences of a float64 function of router logits, checked against a tfjs gradient. */
  function expectGradientMatches(grad: ArrayLike<number>, loss64: (x: Float64Array) => number, at: Float32Array, eps = 1e-5, tolerance = 1e-4): void {
    const x = Float64Array.from(at);
    for (let i = 0; i < x.length; i++) {
      const up = x.slice();
      const down = x.slice();
      up[i] += eps;
      down[i] -= eps;
      const numeric = (loss64(up) - loss64(down)) / (2 * eps);
      expect(Math.abs(grad[i] - numeric)).toBeLessThan(tolerance);
    }
  }

  const softmax64 = (x: Float64Array, E: number): Float64Array => {
    const out = new Float64Array(x.length);
    for (let r = 0; r < x.length / E; r++) {
      const row = x.subarray(r * E, (r + 1) * E);
      const m = Math.max(...row);
      const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
      for (let e = 0; e < E; e++) out[r * E + e] = Math.exp(row[e] - m) / z;
    }
    return out;
  };

  describe('switch balance loss against its plain reference', () => {
    const [n, E, k] = [6, 5, 2];
    const logits = randomArray(n * E, 41, 2);
    // The selection is fixed by the logits (a constant: selection has no gradient), as in training.
    const mask = topKMask(tf.softmax(tf.tensor2d(logits, [n, E])) as tf.Tensor2D, k);
    const maskValues = mask.dataSync();
    const selected = Array.from({ length: n }, (_, t) => Array.from({ length: E }, (_, e) => e).filter((e) => maskValues[t * E + e] === 1));

    test('value equals E · Σ f_e P_e computed in float64', () => {
      const value = scalar(switchBalanceLoss(tf.softmax(tf.tensor2d(logits, [n, E])) as tf.Tensor2D, mask));
      expect(value).toBeCloseTo(switchBalanceLossRef(softmax64(Float64Array.from(logits), E), selected, E), 5);
    });
    test('gradient with respect to router logits matches central finite differences', () => {
      const f = (x: tf.Tensor) => switchBalanceLoss(tf.softmax(x) as tf.Tensor2D, mask);
      const grad = tf.grad(f)(tf.tensor2d(logits, [n, E])).dataSync();
      expectGradientMatches(grad, (x) => switchBalanceLossRef(softmax64(x, E), selected, E), logits);
    });
  });

  describe('router z-loss against its plain reference', () => {
    const [n, E] = [5, 6];
    const logits = randomArray(n * E, 43, 3);
    test('is (log E)² for all-zero logits and equals mean (logsumexp)² in float64', () => {
      expect(scalar(routerZLoss(tf.zeros([n, E]) as tf.Tensor2D))).toBeCloseTo(Math.log(E) ** 2, 5);
      expect(scalar(routerZLoss(tf.tensor2d(logits, [n, E])))).toBeCloseTo(routerZLossRef(Float64Array.from(logits), E), 4);
    });
    test('gradient with respect to router logits matches central finite differences', () => {
      const grad = tf.grad((x: tf.Tensor) => routerZLoss(x as tf.Tensor2D))(tf.tensor2d(logits, [n, E])).dataSync();
      expectGradientMatches(grad, (x) => routerZLossRef(x, E), logits);
    });
  });

  describe('plain matMul', () => {
    test('value and gradients equal tf.matMul', () => {
      const a = tf.tensor2d(randomArray(6 * 5, 1), [6, 5]);
      const b = tf.tensor2d(randomArray(5 * 3, 2), [5, 3]);
      const w = tf.tensor2d(randomArray(6 * 3, 3), [6, 3]);
      const ours = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(plainMatMul(x as tf.Tensor2D, y as tf.Tensor2D), w)))([a, b]);
      const theirs = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D), w)))([a, b]);
      expect(nmse(theirs[0].dataSync(), ours[0].dataSync())).toBeLessThan(1e-12);
      expect(nmse(theirs[1].dataSync(), ours[1].dataSync())).toBeLessThan(1e-12);
    });
  });

  describe('batched dense MoE', () => {
    test.each([1, 5, 17])('equals a naive loop over experts (%i tokens)', (n) => {
      const d = 6;
      const E = 3;
      const I = 4;
      const x = randomArray(n * d, 11);
      const gateW = randomArray(d * E * I, 12, 0.5); // [d, EI]
      const upW = randomArray(d * E * I, 15, 0.5); // [d, EI]
      const down = randomArray(E * I * d, 13, 0.5); // [EI, d]
      const weights = randomArray(n * E, 14).map(Math.abs); // [N, E]
      const fast = expertsMlp(
        tf.tensor2d(x, [n, d]),
        tf.tensor2d(gateW, [d, E * I]),
        tf.tensor2d(upW, [d, E * I]),
        tf.tensor2d(down, [E * I, d]),
        tf.tensor2d(weights, [n, E]),
        E,
        I,
      ).dataSync();
      const naive = new Float64Array(n * d);
      const silu = (v: number) => v / (1 + Math.exp(-v));
      for (let t = 0; t < n; t++) {
        for (let e = 0; e < E; e++) {
          for (let i = 0; i < I; i++) {
            let g = 0;
            let u = 0;
            for (let k = 0; k < d; k++) {
              g += x[t * d + k] * gateW[k * E * I + e * I + i];
              u += x[t * d + k] * upW[k * E * I + e * I + i];
            }
            const hidden = silu(g) * u;
            for (let o = 0; o < d; o++) naive[t * d + o] += weights[t * E + e] * hidden * down[(e * I + i) * d + o];
          }
        }
      }
      expect(nmse(naive, fast)).toBeLessThan(1e-10);
    });
  });

  describe('RoPE and attention', () => {
    test('RoPE equals the rotate_half formula', () => {
      const [B, T, H, hd] = [2, 5, 3, 8];
      const x = randomArray(B * T * H * hd, 21);
      const theta = 10000;
      const out = applyRope(tf.tensor4d(x, [B, T, H, hd]), ropeTables(T, hd, theta)).dataSync();
      const half = hd / 2;
      for (let b = 0; b < B; b++)
        for (let t = 0; t < T; t++)
          for (let h = 0; h < H; h++)
            for (let i = 0; i < half; i++) {
              const base = ((b * T + t) * H + h) * hd;
              const angle = t * Math.pow(theta, (-2 * i) / hd);
              const [c, s] = [Math.cos(angle), Math.sin(angle)];
              expect(out[base + i]).toBeCloseTo(x[base + i] * c - x[base + i + half] * s, 5);
              expect(out[base + i + half]).toBeCloseTo(x[base + i + half] * c + x[base + i] * s, 5);
            }
    });

    test('grouped-query causal attention equals a naive per-head loop', () => {
      const [B, T, H, KV, hd] = [2, 6, 4, 2, 4];
      const d = 8;
      const qkvWidth = (H + 2 * KV) * hd;
      const x = randomArray(B * T * d, 31);
      const wqkv = randomArray(d * qkvWidth, 32, 0.5);
      const bias = randomArray(qkvWidth, 33, 0.1);
      const wo = randomArray(H * hd * d, 34, 0.5);
      const rope = ropeTables(T, hd, 10000);
      const fast = causalSelfAttention(
        tf.tensor2d(x, [B * T, d]),
        tf.tensor2d(wqkv, [d, qkvWidth]),
        tf.tensor1d(bias),
        tf.tensor2d(wo, [H * hd, d]),
        { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: hd },
        rope,
        groupedCausalMask(H / KV, T),
      ).dataSync();

      const naive = new Float64Array(B * T * d);
      const ropeVec = (v: number[], t: number) => {
        const half = hd / 2;
        const out = v.slice();
        for (let i = 0; i < half; i++) {
          const angle = t * Math.pow(10000, (-2 * i) / hd);
          out[i] = v[i] * Math.cos(angle) - v[i + half] * Math.sin(angle);
          out[i + half] = v[i + half] * Math.cos(angle) + v[i] * Math.sin(angle);
        }
        return out;
      };
      for (let b = 0; b < B; b++) {
        // projections per position
        const proj = Array.from({ length: T }, (_, t) =>
          Array.from({ length: qkvWidth }, (_, j) => {
            let s = bias[j];
            for (let k = 0; k < d; k++) s += x[(b * T + t) * d + k] * wqkv[k * qkvWidth + j];
            return s;
          }),
        );
        const heads = Array.from({ length: T }, () => new Float64Array(H * hd));
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / (H / KV));
          for (let t = 0; t < T; t++) {
            const q = ropeVec(proj[t].slice(h * hd, (h + 1) * hd), t);
            const scores: number[] = [];
            for (let j = 0; j <= t; j++) {
              const k = ropeVec(proj[j].slice((H + kvh) * hd, (H + kvh + 1) * hd), j);
              scores.push(q.reduce((a, v, i) => a + v * k[i], 0) / Math.sqrt(hd));
            }
            const m = Math.max(...scores);
            const w = scores.map((s) => Math.exp(s - m));
            const z = w.reduce((a, v) => a + v, 0);
            for (let j = 0; j <= t; j++) {
              const v = proj[j].slice((H + KV + kvh) * hd, (H + KV + kvh + 1) * hd);
              for (let i = 0; i < hd; i++) heads[t][h * hd + i] += (w[j] / z) * v[i];
            }
          }
        }
        for (let t = 0; t < T; t++)
          for (let o = 0; o < d; o++) {
            let s = 0;
            for (let j = 0; j < H * hd; j++) s += heads[t][j] * wo[j * d + o];
            naive[(b * T + t) * d + o] = s;
          }
      }
      expect(nmse(naive, fast)).toBeLessThan(1e-10);
    });
  });

  describe('attention experts (MoA, docs/design.md §12)', () => {
    test.each([
      [4, 1],
      [2, 2],
      [1, 4],
    ])('%i experts of %i heads: Σ_a p_a · (expert a alone) equals the weighted layer', (A, Nh) => {
      // By linearity in W_o: the layer with probabilities equals the probability-weighted sum of plain layers whose
      // W_o keeps only expert a's rows (the plain layer is checked against a naive loop above).
      const [B, T, H, KV, hd] = [2, 5, A * Nh, 2, 4];
      const d = 8;
      const qkvWidth = (H + 2 * KV) * hd;
      const x = tf.tensor2d(randomArray(B * T * d, 41), [B * T, d]);
      const wqkv = tf.tensor2d(randomArray(d * qkvWidth, 42, 0.5), [d, qkvWidth]);
      const bias = tf.tensor1d(randomArray(qkvWidth, 43, 0.1));
      const wo = randomArray(H * hd * d, 44, 0.5); // [H·hd, d]
      const probs = tf.softmax(tf.tensor2d(randomArray(B * T * A, 45, 2), [B * T, A])) as tf.Tensor2D; // [N, A]
      const shape = { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: hd };
      const rope = ropeTables(T, hd, 10000);
      const mask = groupedCausalMask(H / KV, T);
      const weighted = causalSelfAttention(x, wqkv, bias, tf.tensor2d(wo, [H * hd, d]), shape, rope, mask, probs).dataSync();
      const expected = new Float64Array(B * T * d);
      const p = probs.dataSync();
      for (let a = 0; a < A; a++) {
        const only = wo.map((v, i) => (Math.floor(i / d / (Nh * hd)) === a ? v : 0)); // rows a·N_h·hd … of W_o
        const out = causalSelfAttention(x, wqkv, bias, tf.tensor2d(only, [H * hd, d]), shape, rope, mask).dataSync();
        for (let n = 0; n < B * T; n++) for (let o = 0; o < d; o++) expected[n * d + o] += p[n * A + a] * out[n * d + o];
      }
      expect(nmse(expected, weighted)).toBeLessThan(1e-10);
    });

    test('gradient of the loss (lm + α·MI + α_attention·MI_attention) matches central finite differences of the plain reference', () => {
      // Tiny shape; every parameter scaled up so that routers are far from uniform. The reference side is independent
      // code: referenceForward on the checkpoint tensors, cross-entropy and both MI losses written out in float64.
      const cfg: ModelConfig = {
        vocab_size: 11,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        num_experts: 2,
        moe_intermediate_size: 3,
        shared_expert_intermediate_size: 0,
        num_experts_per_tok: 2,
        max_position_embeddings: 16,
        rope_theta: 10000,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        attention_experts: 2,
        heads_per_attention_expert: 2,
      };
      const routing = { mode: 'dense' as const, miAlpha: 0.3, miAlphaAttention: 0.7, topK: 2, balanceAlpha: 0 };
      const T = 5;
      const inputs = Int32Array.from([3, 7, 1, 10, 4]);
      const targets = Int32Array.from([7, 1, 10, 4, 2]);
      const params = initParams(cfg, 8);
      for (const v of params.values()) v.assign(tf.mul(v, v.shape.length > 1 ? 10 : 1));
      const model = new MoEModel(cfg, params);
      const names = [...params.keys()];
      const { value, grads } = tf.variableGrads(() => model.loss(inputs, targets, 1, T, routing).total, names.map((n) => params.get(n)!));
      const gradOf = new Map(names.map((n) => [n, grads[params.get(n)!.name].dataSync()]));
      const arrays = paramsToArrays(params);

      const mi = (probs: Float32Array[], width: number) => {
        const perLayer = probs.map((p) => {
          const n = p.length / width;
          const h = (q: ArrayLike<number>) => -Array.from(q).reduce((acc, v) => acc + v * Math.log(v), 0);
          const mean = Array.from({ length: width }, (_, e) => Array.from({ length: n }, (__, t) => p[t * width + e]).reduce((a, b) => a + b, 0) / n);
          let tokenEntropy = 0;
          for (let t = 0; t < n; t++) tokenEntropy += h(p.subarray(t * width, (t + 1) * width)) / n;
          return tokenEntropy - h(mean);
        });
        return perLayer.reduce((a, b) => a + b, 0) / perLayer.length;
      };
      const referenceLoss = (values: Map<string, Float32Array>) => {
        const tensors = new Map(toCheckpointTensors(cfg, values).map((t) => [t.name, t.data]));
        const ref = referenceForward({ config: cfg, get: (n) => tensors.get(n) as Float32Array }, Array.from(inputs), { collectRouterProbs: true });
        const V = cfg.vocab_size;
        let ce = 0;
        for (let t = 0; t < T; t++) {
          const row = Array.from(ref.logits.subarray(t * V, (t + 1) * V));
          const max = Math.max(...row);
          ce += (Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) + max - row[targets[t]]) / T;
        }
        return ce + routing.miAlpha * mi(ref.routerProbs!, cfg.num_experts) + routing.miAlphaAttention * mi(ref.attentionRouterProbs!, 2);
      };
      expect(Math.abs(value.dataSync()[0] - referenceLoss(arrays))).toBeLessThan(1e-5);

      // Coordinates in the attention router, expert 1's q columns and bias, expert 0's W_o rows, a shared k column,
      // and the MLP router (whose gradient also flows through the attention experts below it).
      const coordinates: [string, number][] = [
        ['train.layers.0.attn.router', 3 * 2 + 0],
        ['train.layers.0.attn.router', 5 * 2 + 1],
        ['train.layers.1.attn.router', 1 * 2 + 1],
        // hd = 2, so qkv [8, 16] holds expert 0's q in columns 0..3, expert 1's in 4..7, k in 8..11, v in 12..15
        ['train.layers.0.attn.qkv', 2 * 16 + 5], // expert 1's q
        ['train.layers.1.attn.qkv', 6 * 16 + 1], // expert 0's q
        ['train.layers.0.attn.qkv', 4 * 16 + 9], // k, shared by both experts
        ['train.layers.0.attn.qkv_bias', 6], // expert 1's q bias
        ['train.layers.1.attn.o', 1 * 8 + 3], // o [8, 8], row 1: expert 0's W_o
        ['train.layers.0.attn.o', 6 * 8 + 2], // row 6: expert 1's W_o
        ['train.layers.1.router', 4 * 2 + 1],
      ];
      const eps = 3e-3;
      let largest = 0;
      for (const [name, index] of coordinates) {
        const shifted = (delta: number) => {
          const copy = new Map(arrays);
          const values = Float32Array.from(arrays.get(name)!);
          values[index] += delta;
          copy.set(name, values);
          return referenceLoss(copy);
        };
        const numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
        largest = Math.max(largest, Math.abs(numeric));
        expect(Math.abs(gradOf.get(name)![index] - numeric)).toBeLessThan(2e-4 + 2e-2 * Math.abs(numeric));
      }
      expect(largest).toBeGreaterThan(1e-2); // the checked gradients are not all vanishing
      tf.dispose([value, ...Object.values(grads)]);
      model.dispose();
      disposeParams(params);
    });
  });

  describe('whole model', () => {
    const config: ModelConfig = {
      vocab_size: 19,
      hidden_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_experts: 4,
      moe_intermediate_size: 6,
      shared_expert_intermediate_size: 5,
      num_experts_per_tok: 2,
      max_position_embeddings: 16,
      rope_theta: 10000,
      rms_norm_eps: 1e-6,
      tie_word_embeddings: false,
    };

    // Megrez2-Preview's layout in miniature: layer 0 a dense MLP (width 20), layers 1 and 2 one pool, both pre-gated
    // (layer 1's router reads the dense layer's mlp_norm output).
    const megrezDense: ModelConfig = { ...config, num_hidden_layers: 3, experts_shared_frequency: 2, first_k_dense_replace: 1, intermediate_size: 20, pre_gate: true };

    test.each([
      ['untied, shared expert', config],
      ['tied, no shared expert', { ...config, tie_word_embeddings: true, shared_expert_intermediate_size: 0 }],
      ['Megrez2: 3 layers, experts shared by 2, pre-gated', { ...config, num_hidden_layers: 3, experts_shared_frequency: 2, pre_gate: true }],
      ['Megrez2: a dense first layer (width E·I), then one pool of 2 layers', { ...config, num_hidden_layers: 3, experts_shared_frequency: 2, first_k_dense_replace: 1 }],
      ['Megrez2-Preview in miniature: a dense first layer of width 20, one pool of 2 layers, pre-gated', megrezDense],
      ['MoA: 4 attention experts of 1 head (two experts per kv head)', { ...config, attention_experts: 4, heads_per_attention_expert: 1 }],
      ['MoA: 2 attention experts of 2 heads (one kv head each), tied', { ...config, tie_word_embeddings: true, attention_experts: 2, heads_per_attention_expert: 2 }],
      ['MoA: 1 attention expert of 4 heads (spanning both kv heads), Megrez2 sharing', { ...config, num_hidden_layers: 3, experts_shared_frequency: 2, pre_gate: true, attention_experts: 1, heads_per_attention_expert: 4 }],
    ])('tfjs forward equals the plain reference forward on the checkpoint tensors (%s)', (_label, cfg) => {
      const params = initParams(cfg, 5);
      // Larger values than the 0.02 init so that every term matters in the comparison.
      for (const v of params.values()) v.assign(tf.mul(v, v.shape.length > 1 ? 10 : 1));
      const biases = [...params.keys()].filter((k) => k.endsWith('qkv_bias'));
      for (const name of biases) params.get(name)?.assign(tf.randomNormal(params.get(name)!.shape, 0, 0.1, 'float32', 3));
      const model = new MoEModel(cfg, params);
      const T = 7;
      const tokens = Int32Array.from({ length: T }, (_, i) => (i * 5 + 3) % cfg.vocab_size);
      const out = model.forward(tokens, 1, T);
      const tensors = new Map(toCheckpointTensors(cfg, paramsToArrays(params)).map((t) => [t.name, t.data]));
      const reference = referenceForward(
        { config: cfg, get: (name) => tensors.get(name) as Float32Array },
        Array.from(tokens),
        { collectRouterProbs: true },
      );
      expect(nmse(reference.logits, out.logits.dataSync())).toBeLessThan(1e-9);
      for (let l = 0; l < cfg.num_hidden_layers; l++) expect(nmse(reference.routerProbs![l], out.routerProbs[l].dataSync())).toBeLessThan(1e-9);
      // MoA: the attention routers' probabilities too, one [T, A] per layer (none without attention experts).
      expect(out.attentionRouterProbs.length).toBe(cfg.attention_experts ? cfg.num_hidden_layers : 0);
      out.attentionRouterProbs.forEach((pa, l) => expect(nmse(reference.attentionRouterProbs![l], pa.dataSync())).toBeLessThan(1e-9));
      model.dispose();
      disposeParams(params);
    });

    // The trainer's loss (lm + α·aux + α_z·z) against the plain reference training loss, for every routing option.
    const lossCases: [string, ModelConfig, RoutingOptions][] = [
      ['DS-MoE, MI loss and z-loss', config, { mode: 'dense', miAlpha: 0.1, topK: 2, balanceAlpha: 0, zLossAlpha: 0.01 }],
      ['SMoE top-2, softmax before top-k, balance loss', config, { mode: 'topk', miAlpha: 0, topK: 2, balanceAlpha: 0.1 }],
      ['SMoE top-2, softmax after top-k, balance loss and z-loss', config, { mode: 'topk', miAlpha: 0, topK: 2, balanceAlpha: 0.1, softmaxAfterTopK: true, zLossAlpha: 0.01 }],
      ['fine-grained G = 3 (12 experts of width 2), top-6 after softmax', splitExperts(config, 3), { mode: 'topk', miAlpha: 0, topK: 6, balanceAlpha: 0.1, softmaxAfterTopK: true, zLossAlpha: 0.01 }],
      ['Megrez2 with a dense first layer: DS-MoE, MI loss and z-loss', megrezDense, { mode: 'dense', miAlpha: 0.1, topK: 2, balanceAlpha: 0, zLossAlpha: 0.01 }],
      ['Megrez2 with a dense first layer: SMoE top-2, balance loss', megrezDense, { mode: 'topk', miAlpha: 0, topK: 2, balanceAlpha: 0.1 }],
    ];
    test.each(lossCases)('training loss equals the plain reference training loss (%s)', (_label, cfg, routing) => {
      const params = initParams(cfg, 6);
      for (const v of params.values()) v.assign(tf.mul(v, v.shape.length > 1 ? 5 : 1));
      const model = new MoEModel(cfg, params);
      const [B, T] = [2, 5];
      const inputs = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 2) % cfg.vocab_size);
      const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 3 + 1) % cfg.vocab_size);
      const terms = model.loss(inputs, targets, B, T, routing);
      const tensors = new Map(toCheckpointTensors(cfg, paramsToArrays(params)).map((t) => [t.name, t.data]));
      const batch = Array.from({ length: B }, (_, b) => ({
        inputs: Array.from(inputs.subarray(b * T, (b + 1) * T)),
        targets: Array.from(targets.subarray(b * T, (b + 1) * T)),
      }));
      const reference = referenceTrainingLoss({ config: cfg, get: (name) => tensors.get(name) as Float32Array }, batch, routing);
      expect(scalar(terms.lm)).toBeCloseTo(reference.lm, 4);
      expect(scalar(terms.aux)).toBeCloseTo(reference.aux, 4);
      expect(scalar(terms.z)).toBeCloseTo(reference.z, 3);
      expect(Math.abs(scalar(terms.total) - reference.total)).toBeLessThan(1e-5 * reference.total);
      if (routing.zLossAlpha) expect(reference.z).toBeGreaterThan(0);
      model.dispose();
      disposeParams(params);
    });

    test('a dense first layer: an MLP under Megrez2/DeepSeek names, no router or experts, and no routing loss', () => {
      const cfg = megrezDense;
      const layer0 = paramSpecs(cfg).filter((p) => p.name.startsWith('train.layers.0.')).map((p) => `${p.name} [${p.shape.join(', ')}]`);
      expect(layer0).toEqual([
        'train.layers.0.attn_norm [16]',
        'train.layers.0.attn.qkv [16, 32]',
        'train.layers.0.attn.qkv_bias [32]',
        'train.layers.0.attn.o [16, 16]',
        'train.layers.0.mlp_norm [16]',
        'train.layers.0.mlp.gate_proj [16, 20]',
        'train.layers.0.mlp.up_proj [16, 20]',
        'train.layers.0.mlp.down_proj [20, 16]',
      ]);
      const params = initParams(cfg, 9);
      for (const v of params.values()) v.assign(tf.mul(v, v.shape.length > 1 ? 5 : 1));
      const tensors = new Map(toCheckpointTensors(cfg, paramsToArrays(params)).map((t) => [t.name, t.data]));
      const mlpNames = [...tensors.keys()].filter((name) => name.startsWith('model.layers.0.mlp.'));
      expect(mlpNames).toEqual(['model.layers.0.mlp.gate_proj.weight', 'model.layers.0.mlp.up_proj.weight', 'model.layers.0.mlp.down_proj.weight']);
      // The MI loss averages over the two MoE layers only (a dense layer's constant 1/E would add 0 and dilute it).
      const batch = [{ inputs: [1, 4, 9, 2, 7], targets: [4, 9, 2, 7, 3] }];
      const weights = { config: cfg, get: (name: string) => tensors.get(name) as Float32Array };
      const terms = referenceTrainingLoss(weights, batch, { mode: 'dense', miAlpha: 0.1, topK: 2, balanceAlpha: 0 });
      const probs = referenceForward(weights, batch[0].inputs, { collectRouterProbs: true }).routerProbs!;
      const mi = (l: number) => mutualInformationLossRef(probs[l], cfg.num_experts);
      expect(terms.aux).toBeCloseTo((mi(1) + mi(2)) / 2, 10);
      expect(Array.from(probs[0])).toEqual(new Array(5 * cfg.num_experts).fill(1 / cfg.num_experts));
      // The dense MLP is in the function: zeroing its down projection changes the logits.
      const before = referenceForward(weights, batch[0].inputs).logits;
      tensors.set('model.layers.0.mlp.down_proj.weight', new Float32Array(16 * 20));
      expect(nmse(before, referenceForward(weights, batch[0].inputs).logits)).toBeGreaterThan(1e-4);
      disposeParams(params);
    });

    test('router gradient of the loss (softmax after top-k, balance and z-loss) matches finite differences of the reference', () => {
      const [, cfg, routing] = lossCases[2];
      const params = initParams(cfg, 8);
      for (const v of params.values()) v.assign(tf.mul(v, v.shape.length > 1 ? 5 : 1));
      const model = new MoEModel(cfg, params);
      const [B, T] = [2, 5];
      const inputs = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % cfg.vocab_size);
      const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 11 + 4) % cfg.vocab_size);
      const router = params.get('train.layers.1.router')!; // [d, E]
      const { grads } = tf.variableGrads(() => model.loss(inputs, targets, B, T, routing).total, [router]);
      const grad = grads[router.name].dataSync(); // [d, E]
      const tensors = new Map(toCheckpointTensors(cfg, paramsToArrays(params)).map((t) => [t.name, Float32Array.from(t.data)]));
      const batch = Array.from({ length: B }, (_, b) => ({
        inputs: Array.from(inputs.subarray(b * T, (b + 1) * T)),
        targets: Array.from(targets.subarray(b * T, (b + 1) * T)),
      }));
      const gate = tensors.get('model.layers.1.mlp.gate.weight')!; // [E, d]: the router transposed
      const lossAt = (index: number, delta: number) => {
        const saved = gate[index];
        gate[index] = saved + delta;
        const value = referenceTrainingLoss({ config: cfg, get: (name) => tensors.get(name) as Float32Array }, batch, routing).total;
        gate[index] = saved;
        return value;
      };
      const [E, d] = [cfg.num_experts, cfg.hidden_size];
      const eps = 1e-3;
      let checked = 0;
      for (let e = 0; e < E; e++) {
        for (const i of [0, 5, 11]) {
          const numeric = (lossAt(e * d + i, eps) - lossAt(e * d + i, -eps)) / (2 * eps);
          expect(Math.abs(grad[i * E + e] - numeric)).toBeLessThan(2e-3 + 1e-2 * Math.abs(numeric));
          checked += Math.abs(numeric) > 1e-3 ? 1 : 0;
        }
      }
      expect(checked).toBeGreaterThan(4); // the check is not vacuous: the router's gradient is not ~0
      tf.dispose(Object.values(grads));
      model.dispose();
      disposeParams(params);
    });

    test('fine-grained init: the experts of a G = 3 split are the G = 1 experts\' hidden units, cut in thirds', () => {
      // Fused expert matrices have the same shape [d, E·I] at every G and are drawn from the same seeded stream,
      // so fine expert e·G + g is hidden units g·I/G … (g+1)·I/G − 1 of coarse expert e; only the router differs.
      const coarse = paramsToArrays(initParams(config, 3));
      const fine = paramsToArrays(initParams(splitExperts(config, 3), 3));
      for (const piece of ['gate_proj', 'up_proj', 'down_proj']) {
        expect(fine.get(`train.layers.0.experts.${piece}`)).toEqual(coarse.get(`train.layers.0.experts.${piece}`));
      }
      expect(fine.get('train.layers.0.router')!.length).toBe(3 * coarse.get('train.layers.0.router')!.length);
    });

    test('a shared pool: same loss as unshared layers holding copies of it, and its gradient is their sum', () => {
      // Megrez2's sharing: layers 0 and 1 use one set of expert variables. The same model written without sharing
      // (each layer its own copy of the same values) computes the same function, and by the chain rule the shared
      // variables' gradient is the sum of the copies' gradients; the pre-gate changes neither identity.
      const shared: ModelConfig = { ...config, num_hidden_layers: 3, experts_shared_frequency: 2, pre_gate: true };
      const unshared: ModelConfig = { ...shared, experts_shared_frequency: 1 };
      const sharedParams = initParams(shared, 4);
      for (const v of sharedParams.values()) v.assign(tf.mul(v, v.shape.length > 1 ? 10 : 1));
      const values = paramsToArrays(sharedParams);
      const pieces = ['gate_proj', 'up_proj', 'down_proj'];
      const copy = new Map(values);
      for (const piece of pieces) copy.set(`train.layers.1.experts.${piece}`, values.get(`train.layers.0.experts.${piece}`) as Float32Array);
      const unsharedParams = paramsFromArrays(unshared, copy);
      expect(sharedParams.size).toBe(unsharedParams.size - 3);
      const T = 6;
      const inputs = Int32Array.from({ length: T }, (_, i) => (i * 7 + 2) % config.vocab_size);
      const targets = Int32Array.from({ length: T }, (_, i) => (i * 3 + 1) % config.vocab_size);
      const routing = { mode: 'dense' as const, miAlpha: 0.1, topK: 2, balanceAlpha: 0 };
      const lossAndGrads = (cfg: ModelConfig, params: typeof sharedParams) => {
        const model = new MoEModel(cfg, params);
        const names = [...params.keys()];
        const { value, grads } = tf.variableGrads(() => model.loss(inputs, targets, 1, T, routing).total, names.map((n) => params.get(n)!));
        const byName = new Map(names.map((n) => [n, Float32Array.from(grads[params.get(n)!.name].dataSync())]));
        const loss = value.dataSync()[0];
        tf.dispose([value, ...Object.values(grads)]);
        model.dispose();
        return { loss, grads: byName };
      };
      const a = lossAndGrads(shared, sharedParams);
      const b = lossAndGrads(unshared, unsharedParams);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * Math.abs(b.loss));
      for (const piece of pieces) {
        const pool = a.grads.get(`train.layers.0.experts.${piece}`)!;
        const g0 = b.grads.get(`train.layers.0.experts.${piece}`)!;
        const g1 = b.grads.get(`train.layers.1.experts.${piece}`)!;
        const sum = g0.map((x, i) => x + g1[i]);
        expect(nmse(sum, pool)).toBeLessThan(1e-9);
        expect(nmse(g0, pool)).toBeGreaterThan(1e-4); // both layers contribute: the sum is not one layer's share
      }
      // The unshared layer 2 (its own pool) and the routers match one to one.
      for (const name of ['train.layers.2.experts.gate_proj', 'train.layers.1.router', 'train.layers.2.router']) {
        expect(nmse(b.grads.get(name)!, a.grads.get(name)!)).toBeLessThan(1e-9);
      }
      disposeParams(sharedParams);
      disposeParams(unsharedParams);
    });

    test('checkpoint layout round-trips exactly', () => {
      const params = initParams(config, 9);
      const arrays = paramsToArrays(params);
      const tensors = new Map(toCheckpointTensors(config, arrays).map((t) => [t.name, t.data]));
      const back = fromCheckpointTensors(config, (name) => tensors.get(name) as Float32Array);
      for (const [name, values] of arrays) expect(back.get(name)).toEqual(values);
      expect(tensors.get('model.layers.1.mlp.experts.3.down_proj.weight')?.length).toBe(16 * 6);
      disposeParams(params);
    });

    test('checkpoint layout of a shared pool: stored once, with its first layer, and round-trips exactly', () => {
      const shared: ModelConfig = { ...config, num_hidden_layers: 3, experts_shared_frequency: 2 };
      const params = initParams(shared, 9);
      const arrays = paramsToArrays(params);
      const written = toCheckpointTensors(shared, arrays);
      const tensors = new Map(written.map((t) => [t.name, t.data]));
      expect(written.filter((t) => t.name.includes('.mlp.experts.')).map((t) => t.name.split('.')[2])).toEqual([
        ...Array(3 * config.num_experts).fill('0'),
        ...Array(3 * config.num_experts).fill('2'),
      ]);
      const back = fromCheckpointTensors(shared, (name) => tensors.get(name) as Float32Array);
      for (const [name, values] of arrays) expect(back.get(name)).toEqual(values);
      disposeParams(params);
    });
  });
});
