/**
 * The training loss in plain TypeScript, float64 sums over the reference forward (`reference.ts`): the yardstick
 * that the tfjs model's `loss` and the routing losses of `routing_losses.ts` are tested against. Each routing loss
 * is written from its paper's formula, over the rows of all sequences of a batch at once (the batch is what the
 * marginals of the MI and balance losses average over).
 */
import type { RoutingOptions } from './model';
import { referenceForward, type ReferenceWeights, type RoutingRule } from './reference';
import { moeLayers } from './config';

/** DS-MoE's mutual-information loss: −H(mean_x p) + mean_x H(p), rows of p [N, E]. */
export function mutualInformationLossRef(probs: ArrayLike<number>, E: number): number {
  const N = probs.length / E;
  const entropy = (q: number[]) => -q.reduce((sum, v) => sum + (v > 0 ? v * Math.log(v) : 0), 0);
  const marginal = new Array<number>(E).fill(0);
  let tokenEntropy = 0;
  for (let t = 0; t < N; t++) {
    const row = Array.from({ length: E }, (_, e) => probs[t * E + e]);
    row.forEach((v, e) => (marginal[e] += v / N));
    tokenEntropy += entropy(row) / N;
  }
  return tokenEntropy - entropy(marginal);
}

/**
 * Switch Transformer's load-balancing loss (Fedus et al. eq. 4, with GShard's top-k dispatch): E · Σ_e f_e · P_e,
 * f_e = share of the N·k selections that went to e, P_e = mean over tokens of p_e (softmax over all experts).
 */
export function switchBalanceLossRef(probs: ArrayLike<number>, selected: number[][], E: number): number {
  const N = probs.length / E;
  const dispatched = new Array<number>(E).fill(0);
  let slots = 0;
  for (const ids of selected) {
    for (const e of ids) dispatched[e] += 1;
    slots += ids.length;
  }
  let sum = 0;
  for (let e = 0; e < E; e++) {
    let meanProb = 0;
    for (let t = 0; t < N; t++) meanProb += probs[t * E + e] / N;
    sum += (dispatched[e] / slots) * meanProb;
  }
  return E * sum;
}

/** ST-MoE's router z-loss (Zoph et al. eq. 5): mean over tokens of (log Σ_e exp z_e)², rows of z [N, E]. */
export function routerZLossRef(logits: ArrayLike<number>, E: number): number {
  const N = logits.length / E;
  let sum = 0;
  for (let t = 0; t < N; t++) {
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[t * E + e]);
    let z = 0;
    for (let e = 0; e < E; e++) z += Math.exp(logits[t * E + e] - max);
    sum += (max + Math.log(z)) ** 2;
  }
  return sum / N;
}

/** The rule training routes with: every expert (DS-MoE) or top-k, renormalised when the softmax comes after top-k. */
export function trainingRoutingRule(routing: RoutingOptions): RoutingRule {
  return routing.mode === 'topk' ? { mode: 'topk', k: routing.topK, renormalize: routing.softmaxAfterTopK === true } : { mode: 'dense' };
}

export interface ReferenceLossTerms {
  total: number;
  lm: number; // mean next-token cross-entropy over every position of every sequence, nats
  aux: number; // MI (dense) or balance (topk) loss, mean over the MoE layers
  z: number; // router z-loss, mean over the MoE layers
}

/**
 * What `MoEModel.loss` computes for a batch of sequences: lm + α·aux + α_z·z, α = mi_alpha (dense) or
 * balance_alpha (topk). `targets[i][t]` is the token predicted at position t of sequence i.
 */
export function referenceTrainingLoss(
  weights: ReferenceWeights,
  batch: { inputs: number[]; targets: number[] }[],
  routing: RoutingOptions,
): ReferenceLossTerms {
  const c = weights.config;
  const E = c.num_experts;
  const V = c.vocab_size;
  const L = c.num_hidden_layers;
  const probs: number[][] = Array.from({ length: L }, () => []); // per layer, rows of every sequence
  const logits: number[][] = Array.from({ length: L }, () => []);
  const selected: number[][][] = Array.from({ length: L }, () => []);
  let lmSum = 0;
  let count = 0;
  for (const { inputs, targets } of batch) {
    const out = referenceForward(weights, inputs, {
      routing: trainingRoutingRule(routing),
      collectRouterProbs: true,
      collectRouterLogits: true,
      collectSelected: true,
    });
    for (let l = 0; l < L; l++) {
      probs[l].push(...out.routerProbs![l]);
      logits[l].push(...out.routerLogits![l]);
      selected[l].push(...out.selected![l]);
    }
    targets.forEach((target, t) => {
      const row = out.logits.subarray(t * V, (t + 1) * V);
      let max = -Infinity;
      for (let i = 0; i < V; i++) max = Math.max(max, row[i]);
      let z = 0;
      for (let i = 0; i < V; i++) z += Math.exp(row[i] - max);
      lmSum += Math.log(z) + max - row[target];
      count += 1;
    });
  }
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const layers = moeLayers(c); // dense MLP layers have no router, so no routing loss
  const aux = mean(
    layers.map((l) => (routing.mode === 'topk' ? switchBalanceLossRef(probs[l], selected[l], E) : mutualInformationLossRef(probs[l], E))),
  );
  const zAlpha = routing.zLossAlpha ?? 0;
  const z = zAlpha > 0 ? mean(layers.map((l) => routerZLossRef(logits[l], E))) : 0;
  const lm = lmSum / count;
  const alpha = routing.mode === 'topk' ? routing.balanceAlpha : routing.miAlpha;
  return { total: lm + alpha * aux + zAlpha * z, lm, aux, z };
}
