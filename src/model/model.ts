import * as tf from '@tensorflow/tfjs';
import { attentionExperts, expertPoolOf, headDim, isDenseLayer, ModelConfig, moeLayers, preGated } from './config';
import { causalSelfAttention, groupedCausalMask } from './attention';
import { matMulTransposedB, plainMatMul } from './matmul';
import { denseMlp, expertsMlp, sharedExpert, topKMask } from './moe';
import { ParamMap } from './params';
import { trainingNames } from '../plan/tensor_table';
import { rmsNorm } from './rms_norm';
import { crossEntropyRows } from './fused_ops';
import { oneHotRows } from './one_hot';
import { ropeTables, RopeTables } from './rope';
import { mutualInformationLoss, routerZLoss, switchBalanceLoss } from './routing_losses';

export { oneHotRows }; // where it was before one_hot.ts

/** How the MoE layers route while training: DS-MoE (all experts + MI loss) or the top-k SMoE baseline. */
export interface RoutingOptions {
  mode: 'dense' | 'topk';
  miAlpha: number;
  topK: number;
  balanceAlpha: number;
  /** topk: weight the selected experts by the softmax over their logits alone (recipe `softmax: after_topk`) */
  softmaxAfterTopK?: boolean;
  /** weight of ST-MoE's router z-loss (0 or absent: not computed) */
  zLossAlpha?: number;
  /** MI-loss weight of the attention routers (MoA layers, docs/design.md §12); default miAlpha */
  miAlphaAttention?: number;
}

export interface ForwardOutput {
  logits: tf.Tensor2D; // [B·T, V]
  /**
   * per layer [B·T, E]. A dense MLP layer (first_k_dense_replace) has no router: its entries are what a plan's zero
   * router computes for it (logits 0, probabilities 1/E), constants that no loss reads (`moeLayers`).
   */
  routerLogits: tf.Tensor2D[];
  routerProbs: tf.Tensor2D[]; // per layer [B·T, E], softmax over all experts
  /** per layer 0/1 selection [B·T, E] in top-k mode (a dense layer: expert 0, as a plan runs it); empty in dense mode */
  selections: tf.Tensor2D[];
  /** per layer [B·T, A], the attention router's softmax over all A attention experts; empty without MoA */
  attentionRouterProbs: tf.Tensor2D[];
}

export interface LossTerms {
  total: tf.Scalar; // lm + α · aux + α_z · z (+ α_attention · attentionAux with MoA)
  lm: tf.Scalar; // mean next-token cross-entropy, nats
  aux: tf.Scalar; // MI loss (dense) or switch balance loss (topk), averaged over the MoE layers
  z: tf.Scalar; // router z-loss averaged over the MoE layers (0 when its weight is 0: not computed)
  attentionAux: tf.Scalar | null; // MI loss of the attention routers, averaged over layers; null without MoA
  attentionRouterProbs: tf.Tensor2D[]; // the forward's, for routing statistics
}

/** The decoder of docs/design.md §1 over parameters in the training layout (`params.ts`). */
export class MoEModel {
  private readonly ropeCache = new Map<number, RopeTables>();
  private readonly maskCache = new Map<number, tf.Tensor2D>();

  constructor(
    readonly config: ModelConfig,
    readonly params: ParamMap,
  ) {}

  private param<T extends tf.Tensor>(name: string): T {
    const value = this.params.get(name);
    if (!value) throw new Error(`model has no parameter ${name}`);
    return value as unknown as T;
  }

  /** RoPE tables and causal mask depend only on T: built once per length and kept outside any tidy. */
  private constants(seqLen: number): { rope: RopeTables; mask: tf.Tensor2D } {
    let rope = this.ropeCache.get(seqLen);
    let mask = this.maskCache.get(seqLen);
    if (!rope || !mask) {
      const group = this.config.num_attention_heads / this.config.num_key_value_heads;
      rope = ropeTables(seqLen, headDim(this.config), this.config.rope_theta);
      mask = groupedCausalMask(group, seqLen);
      tf.keep(rope.cos);
      tf.keep(rope.sin);
      tf.keep(rope.rotation);
      tf.keep(mask);
      this.ropeCache.set(seqLen, rope);
      this.maskCache.set(seqLen, mask);
    }
    return { rope, mask };
  }

  /** Forward pass over B sequences of T tokens, rows of the output ordered (sequence, position). */
  forward(tokens: Int32Array, batch: number, seqLen: number, routing?: RoutingOptions): ForwardOutput {
    const c = this.config;
    const { rope, mask } = this.constants(seqLen);
    const n = batch * seqLen;
    const shape = {
      batch,
      seqLen,
      heads: c.num_attention_heads,
      kvHeads: c.num_key_value_heads,
      headDim: headDim(c),
    };
    const embed = this.param<tf.Tensor2D>(trainingNames.embed); // [V, d]
    // One-hot product instead of gather: gather's gradient needs UnsortedSegmentSum, which wasm lacks.
    const oneHot = oneHotRows(tokens, c.vocab_size); // [N, V]
    let h = plainMatMul(oneHot, embed); // [N, d]
    const routerLogits: tf.Tensor2D[] = [];
    const routerProbs: tf.Tensor2D[] = [];
    const selections: tf.Tensor2D[] = [];
    const attentionRouterProbs: tf.Tensor2D[] = [];
    const moa = attentionExperts(c) > 0;
    let previousM: tf.Tensor2D | null = null; // the previous layer's mlp_norm output, for pre-gated routers
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const a = rmsNorm(h, this.param(trainingNames.attnNorm(l)), c.rms_norm_eps); // [N, d]
      // MoA (design.md §12): the attention router reads the attention input; every expert runs, weighted by pa.
      const pa = moa ? (tf.softmax(plainMatMul(a, this.param(trainingNames.attnRouter(l)))) as tf.Tensor2D) : undefined; // [N, A]
      if (pa) attentionRouterProbs.push(pa);
      const attn = causalSelfAttention(
        a,
        this.param(trainingNames.qkv(l)),
        this.param(trainingNames.qkvBias(l)),
        this.param(trainingNames.o(l)),
        shape,
        rope,
        mask,
        pa,
      ); // [N, d]
      h = tf.add(h, attn) as tf.Tensor2D; // [N, d]
      const m = rmsNorm(h, this.param(trainingNames.mlpNorm(l)), c.rms_norm_eps); // [N, d]
      if (isDenseLayer(c, l)) {
        // Megrez2's dense first layers: one SwiGLU MLP, no routing (the next layer's pre-gate may read this m).
        previousM = m;
        routerLogits.push(tf.zeros([n, c.num_experts]) as tf.Tensor2D); // [N, E]
        routerProbs.push(tf.fill([n, c.num_experts], 1 / c.num_experts) as tf.Tensor2D); // [N, E]
        if (routing?.mode === 'topk') selections.push(oneHotRows(new Int32Array(n), c.num_experts)); // [N, E]
        const mlp = denseMlp(m, this.param(trainingNames.mlpGate(l)), this.param(trainingNames.mlpUp(l)), this.param(trainingNames.mlpDown(l))); // [N, d]
        h = tf.add(h, mlp) as tf.Tensor2D; // [N, d]
        continue;
      }
      // Megrez2's pre-gate: the router reads the previous layer's mlp_norm output (design.md §1).
      const routerInput = preGated(c, l) ? (previousM as tf.Tensor2D) : m; // [N, d]
      previousM = m;
      const logits = plainMatMul(routerInput, this.param(trainingNames.router(l))); // [N, E]
      const probs = tf.softmax(logits) as tf.Tensor2D; // [N, E]
      routerLogits.push(logits);
      routerProbs.push(probs);
      let routeWeights = probs; // [N, E]
      if (routing?.mode === 'topk') {
        const selected = topKMask(probs, routing.topK); // [N, E]
        selections.push(selected);
        routeWeights = tf.mul(probs, selected) as tf.Tensor2D; // [N, E]
        // Softmax after top-k: exp(z_e) / Σ_selected exp(z_j) = p_e / Σ_selected p_j, so renormalising the kept
        // probabilities is that softmax exactly (and what the runtime's `renormalize` computes).
        if (routing.softmaxAfterTopK) routeWeights = tf.div(routeWeights, tf.sum(routeWeights, 1, true)) as tf.Tensor2D; // [N, E]
      }
      // The layer's expert pool (Megrez2's sharing: f layers use one set of variables, so autograd sums its
      // gradient over them).
      const pool = expertPoolOf(c, l);
      let y = expertsMlp(
        m,
        this.param(trainingNames.expertsGate(pool)),
        this.param(trainingNames.expertsUp(pool)),
        this.param(trainingNames.expertsDown(pool)),
        routeWeights,
        c.num_experts,
        c.moe_intermediate_size,
      ); // [N, d]
      if (c.shared_expert_intermediate_size > 0) {
        y = tf.add(
          y,
          sharedExpert(
            m,
            this.param(trainingNames.sharedGate(l)),
            this.param(trainingNames.sharedUp(l)),
            this.param(trainingNames.sharedDown(l)),
            this.param(trainingNames.sharedExpertGate(l)),
          ),
        ) as tf.Tensor2D; // [N, d]
      }
      h = tf.add(h, y) as tf.Tensor2D; // [N, d]
    }
    const final = rmsNorm(h, this.param(trainingNames.finalNorm), c.rms_norm_eps); // [N, d]
    const logits = c.tie_word_embeddings
      ? matMulTransposedB(final, embed) // [N, d]·[V, d]ᵀ = [N, V]
      : plainMatMul(final, this.param<tf.Tensor2D>(trainingNames.lmHead)); // [N, d]·[d, V] = [N, V]
    if (logits.shape[0] !== n) throw new Error('internal: logits rows do not match the batch');
    return { logits, routerLogits, routerProbs, selections, attentionRouterProbs };
  }

  /** Language-model loss plus the routing loss, as scalars (call inside tf.tidy or a gradient function). */
  loss(inputs: Int32Array, targets: Int32Array, batch: number, seqLen: number, routing: RoutingOptions): LossTerms {
    const out = this.forward(inputs, batch, seqLen, routing);
    const lm = crossEntropy(out.logits, targets);
    const routed = moeLayers(this.config); // dense MLP layers have no router, so no routing loss
    const perLayer = routed.map((l) =>
      routing.mode === 'topk' ? switchBalanceLoss(out.routerProbs[l], out.selections[l]) : mutualInformationLoss(out.routerProbs[l]),
    );
    const aux = tf.div(tf.addN(perLayer), perLayer.length) as tf.Scalar;
    const alpha = routing.mode === 'topk' ? routing.balanceAlpha : routing.miAlpha;
    let total = tf.add(lm, tf.mul(aux, alpha)) as tf.Scalar;
    const zAlpha = routing.zLossAlpha ?? 0;
    let z = tf.scalar(0);
    if (zAlpha > 0) {
      z = tf.div(tf.addN(routed.map((l) => routerZLoss(out.routerLogits[l]))), routed.length) as tf.Scalar;
      total = tf.add(total, tf.mul(z, zAlpha)) as tf.Scalar;
    }
    let attentionAux: tf.Scalar | null = null;
    if (out.attentionRouterProbs.length) {
      // The attention routers' MI loss, with its own α (design.md §12; MoA trains densely only).
      const perLayerAttention = out.attentionRouterProbs.map((probs) => mutualInformationLoss(probs));
      attentionAux = tf.div(tf.addN(perLayerAttention), perLayerAttention.length) as tf.Scalar;
      total = tf.add(total, tf.mul(attentionAux, routing.miAlphaAttention ?? routing.miAlpha)) as tf.Scalar;
    }
    return { total, lm, aux, z, attentionAux, attentionRouterProbs: out.attentionRouterProbs };
  }

  /** Releases the cached constants (parameters belong to the caller). */
  dispose(): void {
    for (const rope of this.ropeCache.values()) tf.dispose([rope.cos, rope.sin, rope.rotation]);
    for (const mask of this.maskCache.values()) mask.dispose();
    this.ropeCache.clear();
    this.maskCache.clear();
  }
}

/** Mean next-token cross-entropy in nats; logits [N, V], targets N ids. */
export function crossEntropy(logits: tf.Tensor2D, targets: Int32Array): tf.Scalar {
  return tf.mean(crossEntropyRows(logits, targets)) as tf.Scalar;
}

/** Summed next-token cross-entropy in nats per row, for evaluation: logits [N, V] → [N]. */
export function tokenLosses(logits: tf.Tensor2D, targets: Int32Array): Float32Array {
  const losses = tf.tidy(() => crossEntropyRows(logits, targets)); // [N]
  const values = Float32Array.from(losses.dataSync() as Float32Array);
  losses.dispose();
  return values;
}

