/**
 * Per-layer routing statistics over many tokens (what decides how sparse inference can be), for the MLP routers and,
 * in MoA models, the attention routers (over the A attention experts; docs/design.md §12):
 * marginal entropy H(mean p), mean per-token entropy, probability mass held by the top 1/2/4 experts, and expert
 * load = share of tokens whose most probable expert is e. Entropies in nats.
 */
export interface LayerRoutingStats {
  layer: number;
  marginal_entropy: number;
  token_entropy: number;
  max_entropy: number; // log E, for scale
  top1_mass: number;
  top2_mass: number;
  top4_mass: number;
  expert_load: number[]; // [E], sums to 1
}

export class RoutingStatsAccumulator {
  private tokens = 0;
  private readonly probSum: Float64Array[];
  private readonly entropySum: Float64Array;
  private readonly topMassSum: Float64Array[]; // per layer [3]: top-1, top-2, top-4
  private readonly top1Count: Float64Array[];

  constructor(
    private readonly layers: number,
    private readonly experts: number,
  ) {
    this.probSum = Array.from({ length: layers }, () => new Float64Array(experts));
    this.entropySum = new Float64Array(layers);
    this.topMassSum = Array.from({ length: layers }, () => new Float64Array(3));
    this.top1Count = Array.from({ length: layers }, () => new Float64Array(experts));
  }

  /** Adds N tokens: probs[l] is layer l's router probabilities [N, E], row-major. */
  add(probs: Float32Array[]): void {
    const e = this.experts;
    const n = probs[0].length / e;
    const row = new Float64Array(e);
    for (let l = 0; l < this.layers; l++) {
      const p = probs[l];
      for (let t = 0; t < n; t++) {
        let entropy = 0;
        let best = 0;
        for (let j = 0; j < e; j++) {
          const v = p[t * e + j];
          row[j] = v;
          this.probSum[l][j] += v;
          if (v > 0) entropy -= v * Math.log(v);
          if (v > row[best]) best = j;
        }
        this.entropySum[l] += entropy;
        this.top1Count[l][best] += 1;
        const sorted = Array.from(row).sort((a, b) => b - a);
        let cumulative = 0;
        for (let j = 0; j < Math.min(4, e); j++) {
          cumulative += sorted[j];
          if (j === 0) this.topMassSum[l][0] += cumulative;
          if (j === 1) this.topMassSum[l][1] += cumulative;
          if (j === 3) this.topMassSum[l][2] += cumulative;
        }
        // Fewer than 2 or 4 experts: the top-k mass is all of it.
        if (e < 2) this.topMassSum[l][1] += cumulative;
        if (e < 4) this.topMassSum[l][2] += cumulative;
      }
    }
    this.tokens += n;
  }

  result(): LayerRoutingStats[] {
    const n = Math.max(1, this.tokens);
    return Array.from({ length: this.layers }, (_, l) => {
      const marginal = Array.from(this.probSum[l], (v) => v / n);
      const marginalEntropy = -marginal.reduce((acc, v) => (v > 0 ? acc + v * Math.log(v) : acc), 0);
      return {
        layer: l,
        marginal_entropy: marginalEntropy,
        token_entropy: this.entropySum[l] / n,
        max_entropy: Math.log(this.experts),
        top1_mass: this.topMassSum[l][0] / n,
        top2_mass: this.topMassSum[l][1] / n,
        top4_mass: this.topMassSum[l][2] / n,
        expert_load: Array.from(this.top1Count[l], (v) => v / n),
      };
    });
  }
}

/** One line per layer for the terminal; `label` names the router ("attention layer" for MoA's attention routers). */
export function formatRoutingStats(stats: LayerRoutingStats[], label = 'layer'): string[] {
  return stats.map(
    (s) =>
      `${label} ${s.layer}: H(mean p) ${s.marginal_entropy.toFixed(3)} / ${s.max_entropy.toFixed(3)} nats, ` +
      `mean H(p) ${s.token_entropy.toFixed(3)}, top-1/2/4 mass ${s.top1_mass.toFixed(3)}/${s.top2_mass.toFixed(3)}/${s.top4_mass.toFixed(3)}, ` +
      `load [${s.expert_load.map((v) => v.toFixed(2)).join(' ')}]`,
  );
}
