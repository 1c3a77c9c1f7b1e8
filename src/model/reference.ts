/**
 * The reference forward pass of docs/design.md §1 in plain TypeScript: float32 arrays, naive loops, no tricks.
 * It is the yardstick the tfjs model, the native runtime and calibration are checked against, so it favours being
 * obviously right over being fast. Accumulation is in float64 (JS numbers), results are stored as float32.
 *
 * Weights are looked up by their dense (Qwen2-MoE) names, `denseNames` in src/plan/tensor_table.ts.
 */
import type { ModelConfig } from './config';
import { attentionExperts, expertPoolOf, headDim, headsPerAttentionExpert, isDenseLayer, preGated } from './config';
import { denseNames } from '../plan/tensor_table';

export interface ReferenceWeights {
  config: ModelConfig;
  get(hfName: string): Float32Array;
  /**
   * OLMoE-style q/k RMSNorm (imported checkpoints): q and k are normalised over the whole projection, weights
   * `denseNames.qNorm(l)` [H·hd] and `denseNames.kNorm(l)` [KV·hd], after the bias and before RoPE.
   */
  qkNorm?: boolean;
}

/**
 * Which experts a token uses (docs/design.md §1). `kept` restricts selection to those expert ids (pruning):
 * the others are never selected and the kept ones keep their original probabilities.
 */
export type RoutingRule =
  | { mode: 'dense' }
  | { mode: 'topk'; k: number; renormalize?: boolean; kept?: number[] }
  | { mode: 'threshold'; epsilon: number; kMax?: number; renormalize?: boolean; kept?: number[] };

export interface ReferenceOptions {
  /** One rule per layer, or one rule for every layer; default dense. */
  routing?: RoutingRule[] | RoutingRule;
  /** MoA layers' attention-expert selection (docs/design.md §12), one rule per layer or one for all; default dense (all). */
  attentionRouting?: RoutingRule[] | RoutingRule;
  collectRouterProbs?: boolean; // also the attention routers' (MoA)
  collectRouterLogits?: boolean;
  collectSelected?: boolean;
}

export interface ReferenceResult {
  logits: Float32Array; // [T, V]
  /** [L] of [T, E], softmax over all experts; a dense MLP layer's is what a plan's zero router gives (1/E each). */
  routerProbs?: Float32Array[];
  routerLogits?: Float32Array[]; // [L] of [T, E], before the softmax
  attentionRouterProbs?: Float32Array[]; // [L] of [T, A], MoA models only
  selected?: number[][][]; // [L][T] expert ids used, in selection order (a dense layer: [0], its MLP)
}

export interface Selection {
  ids: number[]; // expert ids, highest probability first (ties: lower id first)
  weights: number[]; // the weight each selected expert's output is scaled by
}

// ---------------------------------------------------------------------------------------------------------------
// small pieces

/** rms_norm(x, w) = x / sqrt(mean(x²) + eps) ⊙ w, row by row. */
export function rmsNorm(
  x: Float32Array, // [T, d]
  weight: Float32Array, // [d]
  eps: number,
): Float32Array {
  const d = weight.length;
  const T = x.length / d;
  const out = new Float32Array(x.length); // [T, d]
  for (let t = 0; t < T; t++) {
    let sumSq = 0;
    for (let i = 0; i < d; i++) sumSq += x[t * d + i] * x[t * d + i];
    const scale = 1 / Math.sqrt(sumSq / d + eps);
    for (let i = 0; i < d; i++) out[t * d + i] = x[t * d + i] * scale * weight[i];
  }
  return out;
}

/** y = x·W^T + b, W stored [out, in] as in PyTorch's Linear. */
export function linear(
  x: Float32Array, // [T, in]
  w: Float32Array, // [out, in]
  outFeatures: number,
  bias?: Float32Array, // [out]
): Float32Array {
  const inFeatures = w.length / outFeatures;
  const T = x.length / inFeatures;
  const y = new Float32Array(T * outFeatures); // [T, out]
  for (let t = 0; t < T; t++) {
    const xo = t * inFeatures;
    for (let o = 0; o < outFeatures; o++) {
      const wo = o * inFeatures;
      // four partial sums: 1.5× faster in V8 than one chain of dependent adds, and calibration runs many forwards
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let i = 0;
      for (; i + 3 < inFeatures; i += 4) {
        a0 += x[xo + i] * w[wo + i];
        a1 += x[xo + i + 1] * w[wo + i + 1];
        a2 += x[xo + i + 2] * w[wo + i + 2];
        a3 += x[xo + i + 3] * w[wo + i + 3];
      }
      for (; i < inFeatures; i++) a0 += x[xo + i] * w[wo + i];
      y[t * outFeatures + o] = (bias ? bias[o] : 0) + (a0 + a1 + (a2 + a3));
    }
  }
  return y;
}

/**
 * Rotary embedding, transformers' rotate_half form, in place on `x` [T, heads·hd]; token t is at `positions[t]`.
 * inv_freq[i] = theta^(−2i/hd); out[i] = x[i]·cos − x[i+half]·sin, out[i+half] = x[i+half]·cos + x[i]·sin.
 */
export function applyRope(x: Float32Array, positions: number[], heads: number, hd: number, theta: number): void {
  const half = hd / 2;
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < half; i++) {
      const angle = positions[t] * Math.pow(theta, (-2 * i) / hd);
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const base = (t * heads + h) * hd;
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * cos - b * sin;
        x[base + i + half] = b * cos + a * sin;
      }
    }
  }
}

/** Causal grouped-query attention: head h reads kv head floor(h / (H/KV)); scores scaled by 1/sqrt(hd). */
export function causalAttention(
  q: Float32Array, // [T, H·hd]
  k: Float32Array, // [T, KV·hd]
  v: Float32Array, // [T, KV·hd]
  heads: number,
  kvHeads: number,
  hd: number,
): Float32Array {
  const T = q.length / (heads * hd);
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float32Array(T * heads * hd); // [T, H·hd]
  const scores = new Float64Array(T);
  for (let h = 0; h < heads; h++) {
    const kvh = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += q[(t * heads + h) * hd + i] * k[(s * kvHeads + kvh) * hd + i];
        scores[s] = dot * scale;
        if (scores[s] > max) max = scores[s];
      }
      let sum = 0;
      for (let s = 0; s <= t; s++) {
        scores[s] = Math.exp(scores[s] - max);
        sum += scores[s];
      }
      for (let i = 0; i < hd; i++) {
        let acc = 0;
        for (let s = 0; s <= t; s++) acc += scores[s] * v[(s * kvHeads + kvh) * hd + i];
        out[(t * heads + h) * hd + i] = acc / sum;
      }
    }
  }
  return out;
}

/** softmax of each row of `x` [rows, n]. */
export function softmaxRows(x: Float32Array, n: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, x[r * n + i]);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp(x[r * n + i] - max);
    for (let i = 0; i < n; i++) out[r * n + i] = Math.exp(x[r * n + i] - max) / sum;
  }
  return out;
}

export const silu = (x: number): number => x / (1 + Math.exp(-x));
export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/**
 * The experts one token uses, from its router probabilities p [E] (over all experts):
 * - dense: every expert (of `kept` where given for pruned rules), weight p_e;
 * - topk: the k largest p among the candidates, ties to the lower id;
 * - threshold: candidates with E·p_e > ε, the largest first, at most kMax, and at least the arg-max.
 * Weights are p_e unless `renormalize`, which divides them by their sum.
 */
export function selectExperts(p: ArrayLike<number>, rule: RoutingRule): Selection {
  const E = p.length;
  const candidates = rule.mode !== 'dense' && rule.kept ? rule.kept : Array.from({ length: E }, (_, e) => e);
  const ranked = [...candidates].sort((a, b) => p[b] - p[a] || a - b);
  let ids: number[];
  if (rule.mode === 'dense') {
    ids = ranked;
  } else if (rule.mode === 'topk') {
    ids = ranked.slice(0, rule.k);
  } else {
    const above = ranked.filter((e) => E * p[e] > rule.epsilon);
    ids = above.slice(0, rule.kMax ?? E);
    if (ids.length === 0) ids = ranked.slice(0, 1);
  }
  let weights = ids.map((e) => p[e]);
  if (rule.mode !== 'dense' && rule.renormalize) {
    const sum = weights.reduce((a, b) => a + b, 0);
    weights = weights.map((w) => w / sum);
  }
  return { ids, weights };
}

/** One SwiGLU expert on n rows of width d: down · (silu(gate·m) ⊙ (up·m)). */
export function expertForward(
  m: Float32Array, // [n, d]
  gate: Float32Array, // [I, d]
  up: Float32Array, // [I, d]
  down: Float32Array, // [d, I]
  d: number,
): Float32Array {
  const I = gate.length / d;
  const g = linear(m, gate, I); // [n, I]
  const u = linear(m, up, I); // [n, I]
  const hidden = new Float32Array(g.length); // [n, I]
  for (let i = 0; i < g.length; i++) hidden[i] = silu(g[i]) * u[i];
  return linear(hidden, down, d); // [n, d]
}

// ---------------------------------------------------------------------------------------------------------------
// the model

/** Logits of every position of one sequence (positions 0..T−1). */
export function referenceForward(weights: ReferenceWeights, tokens: number[], options: ReferenceOptions = {}): ReferenceResult {
  const c = weights.config;
  const d = c.hidden_size;
  const T = tokens.length;
  const H = c.num_attention_heads;
  const KV = c.num_key_value_heads;
  const hd = headDim(c);
  const E = c.num_experts;
  const V = c.vocab_size;
  const ruleOf = (routing: RoutingRule[] | RoutingRule | undefined, l: number): RoutingRule =>
    Array.isArray(routing) ? routing[l] : (routing ?? { mode: 'dense' });
  const rules = Array.from({ length: c.num_hidden_layers }, (_, l) => ruleOf(options.routing, l));
  const positions = tokens.map((_, t) => t);
  const routerProbs: Float32Array[] = [];
  const routerLogits: Float32Array[] = [];
  const attentionRouterProbs: Float32Array[] = [];
  const selected: number[][][] = [];

  const embed = weights.get(denseNames.embed); // [V, d]
  let h: Float32Array = new Float32Array(T * d); // [T, d]
  tokens.forEach((token, t) => {
    if (!Number.isInteger(token) || token < 0 || token >= V) throw new Error(`referenceForward: token ${token} at ${t} is outside 0..${V - 1}`);
    h.set(embed.subarray(token * d, (token + 1) * d), t * d);
  });

  let previousM: Float32Array | null = null; // the previous layer's mlp_norm output, read by pre-gated routers
  for (let l = 0; l < c.num_hidden_layers; l++) {
    // attention block
    const a = rmsNorm(h, weights.get(denseNames.inputNorm(l)), c.rms_norm_eps); // [T, d]
    const A = attentionExperts(c);
    const attentionRule = ruleOf(options.attentionRouting, l);
    const q = A > 0 ? moaQueries(weights, l, a, candidates(attentionRule, A)) : linear(a, weights.get(denseNames.q(l)), H * hd, weights.get(denseNames.qBias(l))); // [T, H·hd]
    const k = linear(a, weights.get(denseNames.k(l)), KV * hd, weights.get(denseNames.kBias(l))); // [T, KV·hd]
    const v = linear(a, weights.get(denseNames.v(l)), KV * hd, weights.get(denseNames.vBias(l))); // [T, KV·hd]
    if (weights.qkNorm) {
      q.set(rmsNorm(q, weights.get(denseNames.qNorm(l)), c.rms_norm_eps)); // [T, H·hd], one norm over all heads
      k.set(rmsNorm(k, weights.get(denseNames.kNorm(l)), c.rms_norm_eps)); // [T, KV·hd]
    }
    applyRope(q, positions, H, hd, c.rope_theta);
    applyRope(k, positions, KV, hd, c.rope_theta);
    const o = causalAttention(q, k, v, H, KV, hd); // [T, H·hd]
    if (A > 0) {
      const pa = softmaxRows(linear(a, weights.get(denseNames.attnRouter(l)), A), A); // [T, A]
      if (options.collectRouterProbs) attentionRouterProbs.push(pa);
      h = addInto(h, moaOutput(weights, l, o, pa, attentionRule));
    } else {
      h = addInto(h, linear(o, weights.get(denseNames.o(l)), d)); // [T, d]
    }

    // MoE block
    const m = rmsNorm(h, weights.get(denseNames.postAttentionNorm(l)), c.rms_norm_eps); // [T, d]
    if (isDenseLayer(c, l)) {
      // A dense MLP layer (first_k_dense_replace): no routing rule applies. The next layer's pre-gate may read m.
      previousM = m;
      if (options.collectRouterLogits) routerLogits.push(new Float32Array(T * E)); // [T, E]
      if (options.collectRouterProbs) routerProbs.push(new Float32Array(T * E).fill(1 / E)); // [T, E]
      if (options.collectSelected) selected.push(tokens.map(() => [0]));
      h = addInto(h, expertForward(m, weights.get(denseNames.mlpGate(l)), weights.get(denseNames.mlpUp(l)), weights.get(denseNames.mlpDown(l)), d)); // [T, d]
      continue;
    }
    // Megrez2's pre-gate: the router reads the previous layer's m (docs/design.md §1).
    const routerInput = preGated(c, l) ? (previousM as Float32Array) : m; // [T, d]
    previousM = m;
    const z = linear(routerInput, weights.get(denseNames.router(l)), E); // [T, E]
    const p = softmaxRows(z, E); // [T, E]
    if (options.collectRouterLogits) routerLogits.push(z);
    const pool = expertPoolOf(c, l); // Megrez2's sharing: the experts of the pool's first layer
    if (options.collectRouterProbs) routerProbs.push(p);
    const y = new Float32Array(T * d); // [T, d]
    // Select per token, then run each expert once over the rows of the tokens that chose it.
    const layerSelected: number[][] = [];
    const rowsOf = new Map<number, { tokens: number[]; weights: number[] }>(); // expert → its tokens
    for (let t = 0; t < T; t++) {
      const selection = selectExperts(p.subarray(t * E, (t + 1) * E), rules[l]);
      layerSelected.push(selection.ids);
      selection.ids.forEach((e, j) => {
        if (!rowsOf.has(e)) rowsOf.set(e, { tokens: [], weights: [] });
        rowsOf.get(e)!.tokens.push(t);
        rowsOf.get(e)!.weights.push(selection.weights[j]);
      });
    }
    for (const e of [...rowsOf.keys()].sort((a, b) => a - b)) {
      const { tokens: rows, weights: w } = rowsOf.get(e)!;
      const xe = new Float32Array(rows.length * d); // [n_e, d]
      rows.forEach((t, r) => xe.set(m.subarray(t * d, (t + 1) * d), r * d));
      const out = expertForward(xe, weights.get(denseNames.expertGate(pool, e)), weights.get(denseNames.expertUp(pool, e)), weights.get(denseNames.expertDown(pool, e)), d); // [n_e, d]
      rows.forEach((t, r) => {
        for (let i = 0; i < d; i++) y[t * d + i] += w[r] * out[r * d + i];
      });
    }
    if (options.collectSelected) selected.push(layerSelected);
    if (c.shared_expert_intermediate_size > 0) {
      const gateW = weights.get(denseNames.sharedExpertGate(l)); // [1, d]
      const sg = weights.get(denseNames.sharedGate(l));
      const su = weights.get(denseNames.sharedUp(l));
      const sd = weights.get(denseNames.sharedDown(l));
      const gateLogit = linear(m, gateW, 1); // [T, 1]
      const out = expertForward(m, sg, su, sd, d); // [T, d]
      for (let t = 0; t < T; t++) {
        const scale = sigmoid(gateLogit[t]);
        for (let i = 0; i < d; i++) y[t * d + i] += scale * out[t * d + i];
      }
    }
    h = addInto(h, y);
  }

  const final = rmsNorm(h, weights.get(denseNames.finalNorm), c.rms_norm_eps); // [T, d]
  const lmHead = c.tie_word_embeddings ? embed : weights.get(denseNames.lmHead); // [V, d]
  const logits = linear(final, lmHead, V); // [T, V]
  return {
    logits,
    ...(options.collectRouterProbs ? { routerProbs } : {}),
    ...(options.collectRouterLogits ? { routerLogits } : {}),
    ...(options.collectRouterProbs && attentionExperts(c) > 0 ? { attentionRouterProbs } : {}),
    ...(options.collectSelected ? { selected } : {}),
  };
}

/** The experts a rule can select: its `kept` (pruning), or all n. */
function candidates(rule: RoutingRule, n: number): number[] {
  return rule.mode !== 'dense' && rule.kept ? rule.kept : Array.from({ length: n }, (_, e) => e);
}

/**
 * A MoA layer's queries [T, H·hd]: expert a's q_proj slice gives heads a·N_h … (a+1)·N_h − 1 (design.md §12). Only
 * the `experts` a rule can select are computed (a pruned expert has no weights); the others' heads stay zero, unused.
 */
function moaQueries(weights: ReferenceWeights, l: number, a: Float32Array /* [T, d] */, experts: number[]): Float32Array {
  const c = weights.config;
  const H = c.num_attention_heads;
  const hd = headDim(c);
  const width = headsPerAttentionExpert(c) * hd; // N_h·hd
  const T = a.length / c.hidden_size;
  const q = new Float32Array(T * H * hd); // [T, H·hd]
  for (const e of experts) {
    const qe = linear(a, weights.get(denseNames.attnExpertQ(l, e)), width, weights.get(denseNames.attnExpertQBias(l, e))); // [T, N_h·hd]
    for (let t = 0; t < T; t++) q.set(qe.subarray(t * width, (t + 1) * width), t * H * hd + e * width);
  }
  return q;
}

/**
 * A MoA layer's output Σ_{a ∈ Sa(t)} w_a · o_a·Wo_a^T [T, d] from the heads' outputs o [T, H·hd]: each token's experts
 * chosen from pa by `rule` (dense: all), weighted by their probabilities (never renormalised unless the rule says so).
 */
function moaOutput(weights: ReferenceWeights, l: number, o: Float32Array, pa: Float32Array, rule: RoutingRule): Float32Array {
  const c = weights.config;
  const d = c.hidden_size;
  const A = attentionExperts(c);
  const width = headsPerAttentionExpert(c) * headDim(c); // N_h·hd
  const T = pa.length / A;
  const y = new Float32Array(T * d); // [T, d]
  for (let t = 0; t < T; t++) {
    const selection = selectExperts(pa.subarray(t * A, (t + 1) * A), rule);
    selection.ids.forEach((e, j) => {
      const oe = o.subarray(t * A * width + e * width, t * A * width + (e + 1) * width); // [N_h·hd], expert e's heads
      const out = linear(oe, weights.get(denseNames.attnExpertO(l, e)), d); // [1, d]
      for (let i = 0; i < d; i++) y[t * d + i] += selection.weights[j] * out[i];
    });
  }
  return y;
}

function addInto(h: Float32Array, delta: Float32Array): Float32Array {
  for (let i = 0; i < h.length; i++) h[i] += delta[i];
  return h;
}

/** Mean next-token cross-entropy (nats) of logits [T, V] for targets tokens[1..T−1] (T−1 predictions). */
export function nextTokenLoss(logits: Float32Array, tokens: number[], vocabSize: number): { sum: number; count: number } {
  let sum = 0;
  for (let t = 0; t + 1 < tokens.length; t++) {
    const row = logits.subarray(t * vocabSize, (t + 1) * vocabSize);
    let max = -Infinity;
    for (let i = 0; i < vocabSize; i++) max = Math.max(max, row[i]);
    let z = 0;
    for (let i = 0; i < vocabSize; i++) z += Math.exp(row[i] - max);
    sum += Math.log(z) + max - row[tokens[t + 1]];
  }
  return { sum, count: Math.max(tokens.length - 1, 0) };
}
