/**
 * Routing statistics of one layer over calibration tokens, from the router probabilities and a selection rule:
 * how many experts tokens use, how much probability mass the used experts carry, and how load spreads.
 */
import { selectExperts, type RoutingRule } from '../model/reference';

export interface LayerRoutingStats {
  tokens: number;
  meanSelected: number; // mean experts per token
  massCovered: number; // mean over tokens of Σ_{selected} p_e (dense probabilities, before any renormalisation)
  expertLoad: number[]; // [E] share of tokens selecting each expert
  neverSelected: number[]; // expert ids no token selected
  selectedHistogram: number[]; // [E+1] tokens by number of experts selected
}

export function layerRoutingStats(
  probs: Float32Array, // [N, E] router probabilities of N tokens
  numExperts: number,
  rule: RoutingRule,
): LayerRoutingStats {
  const E = numExperts;
  const N = probs.length / E;
  const counts = new Array<number>(E).fill(0);
  const histogram = new Array<number>(E + 1).fill(0);
  let selectedTotal = 0;
  let mass = 0;
  for (let t = 0; t < N; t++) {
    const p = probs.subarray(t * E, (t + 1) * E);
    const { ids } = selectExperts(p, rule);
    selectedTotal += ids.length;
    histogram[ids.length]++;
    for (const e of ids) {
      counts[e]++;
      mass += p[e];
    }
  }
  const expertLoad = counts.map((c) => (N ? c / N : 0));
  return {
    tokens: N,
    meanSelected: N ? selectedTotal / N : 0,
    massCovered: N ? mass / N : 0,
    expertLoad,
    neverSelected: counts.flatMap((c, e) => (c === 0 ? [e] : [])),
    selectedHistogram: histogram,
  };
}

/**
 * A dense MLP layer's statistics (first_k_dense_replace): its one expert, the MLP, for every token and carrying the
 * whole output (the plan's zero router and renormalised top-1; docs/design.md §4), whatever the rule.
 */
export function denseLayerRoutingStats(tokens: number, numExperts: number): LayerRoutingStats {
  const histogram = new Array<number>(numExperts + 1).fill(0);
  histogram[1] = tokens;
  return {
    tokens,
    meanSelected: 1,
    massCovered: 1,
    expertLoad: Array.from({ length: numExperts }, (_, e) => (e === 0 && tokens > 0 ? 1 : 0)),
    neverSelected: Array.from({ length: numExperts - 1 }, (_, i) => i + 1),
    selectedHistogram: histogram,
  };
}

/**
 * The threshold-topk rule: k for a layer = ceil(mean experts per token under the threshold rule − 0.05), clamped
 * to 1..available. The ceiling makes the fixed top-k run at least as many experts as the threshold does on
 * average; the 0.05 slack stops a handful of calibration tokens from adding an expert for every token (a trained
 * tiny model's layer measured 2047 tokens at 2 experts and one at 4: mean 2.001, which should give k = 2, not 3).
 */
export const K_RULE_SLACK = 0.05;

export function kFromThresholdMean(meanSelected: number, available: number): number {
  return Math.min(available, Math.max(1, Math.ceil(meanSelected - K_RULE_SLACK)));
}

/**
 * Experts to keep when pruning those selected by fewer than `share` of tokens: never fewer than `minKept`
 * (the layer's k), topping up with the most loaded of the pruned ones. Returned ids are increasing.
 */
export function keptAfterPruning(expertLoad: number[], share: number, minKept: number): number[] {
  const byLoad = expertLoad.map((load, e) => ({ load, e })).sort((a, b) => b.load - a.load || a.e - b.e);
  const kept = byLoad.filter(({ load }) => load >= share).map(({ e }) => e);
  for (const { e } of byLoad) {
    if (kept.length >= minKept) break;
    if (!kept.includes(e)) kept.push(e);
  }
  return kept.sort((a, b) => a - b);
}
