import { denseNames } from '../../src/plan/tensor_table';
import type { ModelConfig } from '../../src/model/config';
import {
  applyRope,
  causalAttention,
  referenceForward,
  rmsNorm,
  selectExperts,
  silu,
  nextTokenLoss,
} from '../../src/model/reference';
import { randomDenseWeights, tinyConfig, weightsSource } from '../helpers/dense_fixtures';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(tol + 1e-6 * Math.abs(b[i]));
};

describe('reference pieces', () => {
  test('rmsNorm divides by the root mean square and scales', () => {
    const out = rmsNorm(new Float32Array([1, 2, 3, 4, 0, 0, 0, 2]), new Float32Array([1, 1, 2, 0.5]), 0);
    const s1 = 1 / Math.sqrt(7.5); // mean(1,4,9,16) = 7.5
    const s2 = 1 / Math.sqrt(1); // mean(0,0,0,4) = 1
    close(out, [1 * s1, 2 * s1, 6 * s1, 2 * s1, 0, 0, 0, 1 * s2]);
  });

  test('rope rotates pairs (i, i+half) by pos·theta^(−2i/hd)', () => {
    // hd = 4, half = 2: inv_freq = [1, 100^-1] with theta = 100
    const x = new Float32Array([1, 2, 3, 4, /* position 1 */ 1, 2, 3, 4]);
    applyRope(x, [0, 1], 1, 4, 100);
    close(x.subarray(0, 4), [1, 2, 3, 4]); // position 0: identity
    const [c0, s0, c1, s1] = [Math.cos(1), Math.sin(1), Math.cos(0.1), Math.sin(0.1)];
    close(x.subarray(4), [1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1]);
  });

  test('causal attention: position 0 sees itself only; GQA shares kv heads', () => {
    // T = 2, H = 2, KV = 1, hd = 2
    const q = new Float32Array([1, 0, 0, 1, /* t1 */ 1, 0, 0, 2]);
    const k = new Float32Array([1, 0, /* t1 */ 0, 1]);
    const v = new Float32Array([10, 20, /* t1 */ 30, 40]);
    const out = causalAttention(q, k, v, 2, 1, 2);
    const s = 1 / Math.sqrt(2);
    // t1 head 0: scores [1·s, 0]; head 1: scores [0, 2·s]
    const w0 = Math.exp(s) / (Math.exp(s) + 1);
    const w1 = 1 / (1 + Math.exp(2 * s));
    close(out, [10, 20, 10, 20, w0 * 10 + (1 - w0) * 30, w0 * 20 + (1 - w0) * 40, w1 * 10 + (1 - w1) * 30, w1 * 20 + (1 - w1) * 40]);
  });

  test('selectExperts: top-k, ties to the lower id, unnormalised unless asked', () => {
    const p = [0.1, 0.3, 0.3, 0.05, 0.25];
    expect(selectExperts(p, { mode: 'topk', k: 2 })).toEqual({ ids: [1, 2], weights: [0.3, 0.3] });
    expect(selectExperts(p, { mode: 'topk', k: 3 }).ids).toEqual([1, 2, 4]);
    const renorm = selectExperts(p, { mode: 'topk', k: 2, renormalize: true });
    close(renorm.weights, [0.5, 0.5]);
    expect(selectExperts(p, { mode: 'dense' }).ids.sort()).toEqual([0, 1, 2, 3, 4]);
  });

  test('selectExperts: threshold keeps E·p > ε, at most kMax, at least the arg-max', () => {
    const p = [0.1, 0.3, 0.35, 0.05, 0.2]; // E·p = [0.5, 1.5, 1.75, 0.25, 1.0]
    expect(selectExperts(p, { mode: 'threshold', epsilon: 0.48 }).ids).toEqual([2, 1, 4, 0]);
    expect(selectExperts(p, { mode: 'threshold', epsilon: 0.5 }).ids).toEqual([2, 1, 4]); // strict: 0.5 is not > 0.5
    expect(selectExperts(p, { mode: 'threshold', epsilon: 1.0 }).ids).toEqual([2, 1]);
    expect(selectExperts(p, { mode: 'threshold', epsilon: 0.48, kMax: 2 }).ids).toEqual([2, 1]);
    expect(selectExperts(p, { mode: 'threshold', epsilon: 4 }).ids).toEqual([2]); // nobody above: the arg-max
    expect(selectExperts(p, { mode: 'threshold', epsilon: 0.48 }).weights).toEqual([0.35, 0.3, 0.2, 0.1]);
  });

  test('selectExperts: pruned experts are never selected, the rest keep their probabilities', () => {
    const p = [0.1, 0.3, 0.35, 0.05, 0.2];
    expect(selectExperts(p, { mode: 'topk', k: 2, kept: [0, 1, 3, 4] })).toEqual({ ids: [1, 4], weights: [0.3, 0.2] });
    expect(selectExperts(p, { mode: 'threshold', epsilon: 3, kept: [0, 3] }).ids).toEqual([0]);
  });

  test('nextTokenLoss is the mean cross-entropy of the next token', () => {
    const logits = new Float32Array([0, Math.log(3), /* last row unused */ 5, 5]);
    const { sum, count } = nextTokenLoss(logits, [0, 1], 2);
    expect(count).toBe(1);
    expect(sum).toBeCloseTo(Math.log(4 / 3), 6);
  });
});

describe('referenceForward', () => {
  // One layer, d = 4, one head of dim 4, E = 2 experts of width 1, V = 4; attention weights zero, so the
  // attention block adds nothing and the whole forward can be written out by hand.
  const config: ModelConfig = {
    vocab_size: 4,
    hidden_size: 4,
    num_hidden_layers: 1,
    num_attention_heads: 1,
    num_key_value_heads: 1,
    num_experts: 2,
    moe_intermediate_size: 1,
    shared_expert_intermediate_size: 0,
    num_experts_per_tok: 1,
    max_position_embeddings: 8,
    rope_theta: 10000,
    rms_norm_eps: 0,
    tie_word_embeddings: true,
  };
  const handWeights = () => {
    const w = new Map<string, Float32Array>();
    const zeros = (n: number) => new Float32Array(n);
    w.set(denseNames.embed, new Float32Array([1, 2, 3, 4, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])); // [4, 4]
    w.set(denseNames.inputNorm(0), new Float32Array([1, 1, 1, 1]));
    for (const n of [denseNames.q(0), denseNames.k(0), denseNames.v(0), denseNames.o(0)]) w.set(n, zeros(16));
    for (const n of [denseNames.qBias(0), denseNames.kBias(0), denseNames.vBias(0)]) w.set(n, zeros(4));
    w.set(denseNames.postAttentionNorm(0), new Float32Array([1, 1, 1, 1]));
    w.set(denseNames.router(0), new Float32Array([0, 0, 0, 0, /* expert 1 */ 0, 0, 0, 1]));
    w.set(denseNames.expertGate(0, 0), new Float32Array([1, 0, 0, 0]));
    w.set(denseNames.expertUp(0, 0), new Float32Array([0, 1, 0, 0]));
    w.set(denseNames.expertDown(0, 0), new Float32Array([1, 0, 0, 0]));
    w.set(denseNames.expertGate(0, 1), new Float32Array([0, 0, 1, 0]));
    w.set(denseNames.expertUp(0, 1), new Float32Array([0, 0, 0, 1]));
    w.set(denseNames.expertDown(0, 1), new Float32Array([0, 1, 0, 0]));
    w.set(denseNames.sharedExpertGate(0), zeros(4));
    w.set(denseNames.finalNorm, new Float32Array([1, 1, 1, 1]));
    return weightsSource(config, w);
  };
  // token 0: h = [1,2,3,4], m = h/sqrt(7.5), p = softmax([0, m3])
  const h = [1, 2, 3, 4];
  const m = h.map((x) => x / Math.sqrt(7.5));
  const p1 = 1 / (1 + Math.exp(-m[3]));
  const p0 = 1 - p1;
  const e0 = silu(m[0]) * m[1]; // expert 0 writes dim 0
  const e1 = silu(m[2]) * m[3]; // expert 1 writes dim 1
  const expectedLogits = (h1: number[]) => {
    const r = Math.sqrt(h1.reduce((a, x) => a + x * x, 0) / 4);
    const f = h1.map((x) => x / r);
    // tied LM head = embed rows: [1,2,3,4]·f, f1, f2, f3
    return [f[0] + 2 * f[1] + 3 * f[2] + 4 * f[3], f[1], f[2], f[3]];
  };

  test('dense: y = p0·E0 + p1·E1 (hand-computed)', () => {
    const { logits, routerProbs } = referenceForward(handWeights(), [0], { collectRouterProbs: true });
    close(routerProbs![0], [p0, p1]);
    close(logits, expectedLogits([1 + p0 * e0, 2 + p1 * e1, 3, 4]), 1e-5);
  });

  test('top-1: only the arg-max expert, weighted by its unnormalised probability', () => {
    const { logits, selected } = referenceForward(handWeights(), [0], { routing: { mode: 'topk', k: 1 }, collectSelected: true });
    expect(p1).toBeGreaterThan(p0);
    expect(selected).toEqual([[[1]]]);
    close(logits, expectedLogits([1, 2 + p1 * e1, 3, 4]), 1e-5);
    const renorm = referenceForward(handWeights(), [0], { routing: { mode: 'topk', k: 1, renormalize: true } });
    close(renorm.logits, expectedLogits([1, 2 + e1, 3, 4]), 1e-5);
  });

  const random = weightsSource(tinyConfig, randomDenseWeights(tinyConfig, 11));
  const tokens = [3, 200, 17, 17, 99, 5, 0, 259];

  test('dense equals top-k with k = E, and threshold with ε = 0', () => {
    const dense = referenceForward(random, tokens).logits;
    expect(referenceForward(random, tokens, { routing: { mode: 'topk', k: tinyConfig.num_experts } }).logits).toEqual(dense);
    expect(referenceForward(random, tokens, { routing: { mode: 'threshold', epsilon: 0 } }).logits).toEqual(dense);
    const top1 = referenceForward(random, tokens, { routing: { mode: 'topk', k: 1 } }).logits;
    expect(top1).not.toEqual(dense);
  });

  test('causal: logits at t do not depend on later tokens', () => {
    const a = referenceForward(random, tokens, { routing: { mode: 'topk', k: 2 } }).logits;
    const changed = [...tokens.slice(0, 5), 1, 2, 3];
    const b = referenceForward(random, changed, { routing: { mode: 'topk', k: 2 } }).logits;
    const V = tinyConfig.vocab_size;
    expect(Array.from(b.subarray(0, 5 * V))).toEqual(Array.from(a.subarray(0, 5 * V)));
    expect(Array.from(b.subarray(5 * V))).not.toEqual(Array.from(a.subarray(5 * V)));
  });

  test('grouped-query attention equals full attention with duplicated kv heads', () => {
    const gqa = randomDenseWeights(tinyConfig, 5); // H = 2, KV = 1
    const full = new Map(gqa);
    const fullConfig = { ...tinyConfig, num_key_value_heads: 2 };
    for (let l = 0; l < tinyConfig.num_hidden_layers; l++) {
      for (const [w, b] of [[denseNames.k(l), denseNames.kBias(l)], [denseNames.v(l), denseNames.vBias(l)]]) {
        const weight = gqa.get(w)!;
        const bias = gqa.get(b)!;
        full.set(w, Float32Array.from([...weight, ...weight]));
        full.set(b, Float32Array.from([...bias, ...bias]));
      }
    }
    const a = referenceForward(weightsSource(tinyConfig, gqa), tokens).logits;
    const b = referenceForward(weightsSource(fullConfig, full), tokens).logits;
    close(a, b, 1e-6);
  });

  test('a shared expert adds sigmoid(m·w)·shared(m)', () => {
    const config = { ...tinyConfig, shared_expert_intermediate_size: 3 };
    const w = randomDenseWeights(config, 8);
    const withShared = referenceForward(weightsSource(config, w), tokens).logits;
    const zeroed = new Map(w);
    for (let l = 0; l < config.num_hidden_layers; l++) zeroed.set(denseNames.sharedDown(l), new Float32Array(3 * config.hidden_size));
    const without = referenceForward(weightsSource(config, zeroed), tokens).logits;
    const noShared = referenceForward(weightsSource(tinyConfig, w), tokens).logits;
    expect(Array.from(without)).toEqual(Array.from(noShared));
    expect(Array.from(withShared)).not.toEqual(Array.from(noShared));
  });

  test('rejects token ids outside the vocabulary', () => {
    expect(() => referenceForward(random, [0, 260])).toThrow(/token 260 at 1 is outside 0..259/);
  });
});
