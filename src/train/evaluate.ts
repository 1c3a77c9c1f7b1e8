import * as tf from '@tensorflow/tfjs';
import { attentionExperts } from '../model/config';
import { MoEModel, tokenLosses } from '../model/model';
import { LayerRoutingStats, RoutingStatsAccumulator } from './routing_stats';

/** `count` windows of equal length, concatenated: targets[i] is the token after inputs[i]. */
export interface TokenWindows {
  inputs: Int32Array; // [count·T]
  targets: Int32Array; // [count·T]
  count: number;
}

export interface EvalResult {
  loss: number; // mean next-token cross-entropy, nats
  perplexity: number;
  bits_per_byte: number; // loss / ln 2 / (bytes per token): comparable across tokenizers
  tokens: number; // predicted positions scored
  layers: LayerRoutingStats[];
  /** the attention routers' statistics over the A attention experts (MoA models only, docs/design.md §12) */
  attention_layers?: LayerRoutingStats[];
}

/**
 * Scores groups of windows (each group of one length) with the dense model (all experts, as trained),
 * `batchSize` windows per forward. `bytesPerToken`: UTF-8 bytes of the scored text per token.
 */
export function evaluateWindows(
  model: MoEModel,
  groups: TokenWindows | TokenWindows[],
  bytesPerToken: number,
  batchSize: number,
): EvalResult {
  const config = model.config;
  const stats = new RoutingStatsAccumulator(config.num_hidden_layers, config.num_experts);
  const A = attentionExperts(config);
  const attentionStats = A > 0 ? new RoutingStatsAccumulator(config.num_hidden_layers, A) : null;
  let lossSum = 0;
  let tokens = 0;
  for (const windows of Array.isArray(groups) ? groups : [groups]) {
    if (windows.count === 0) continue;
    const seqLen = windows.inputs.length / windows.count;
    for (let start = 0; start < windows.count; start += batchSize) {
      const rows = Math.min(batchSize, windows.count - start);
      const inputs = windows.inputs.subarray(start * seqLen, (start + rows) * seqLen); // [rows·T]
      const targets = windows.targets.subarray(start * seqLen, (start + rows) * seqLen); // [rows·T]
      const { losses, probs, attentionProbs } = tf.tidy(() => {
        const out = model.forward(inputs, rows, seqLen);
        return {
          losses: tf.keep(tf.tensor1d(tokenLosses(out.logits, targets))),
          probs: out.routerProbs.map((p) => tf.keep(p)),
          attentionProbs: out.attentionRouterProbs.map((p) => tf.keep(p)),
        };
      });
      const values = losses.dataSync();
      for (let i = 0; i < values.length; i++) lossSum += values[i];
      tokens += values.length;
      stats.add(probs.map((p) => p.dataSync() as Float32Array));
      attentionStats?.add(attentionProbs.map((p) => p.dataSync() as Float32Array));
      tf.dispose([losses, ...probs, ...attentionProbs]);
    }
  }
  const loss = lossSum / Math.max(1, tokens);
  return {
    loss,
    perplexity: Math.exp(loss),
    bits_per_byte: loss / Math.LN2 / bytesPerToken,
    tokens,
    layers: stats.result(),
    ...(attentionStats ? { attention_layers: attentionStats.result() } : {}),
  };
}
