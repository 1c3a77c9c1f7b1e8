import type { EvaluationContext, RoutingOverride } from './evaluation_context';

/**
 * Held-out quality under one routing rule, computed from the runtime's logits so that every point of the report
 * (dense, the plan, each k and ε of the quality–cost sweep) and of the converter's plan choice is scored by the
 * same code on the same tokens.
 * Each window is scored independently from position 0; token i+1 is predicted from tokens 0..i.
 */

export interface Quality {
  loss: number; // mean next-token cross-entropy, nats
  perplexity: number;
  bits_per_byte: number;
  tokens: number; // predicted tokens
  bytes: number; // bytes of text those tokens decode to
  mean_active_experts: number; // experts per token per layer under this routing, from the runtime's counters
  layer_mean_experts: number[]; // [L] experts per token in each layer, from the same counters
}

export interface QualityInput {
  windows: Int32Array[]; // each [n ≥ 2] token ids
  vocabSize: number;
  /** Bytes of text a token id stands for (1 for a byte tokenizer, 0 for special tokens). */
  tokenBytes: (id: number) => number;
  /** Slots the context was created with: windows are evaluated this many at a time. */
  slots: number;
}

/** −log softmax(logits)[target] for one row, stable in f64. */
export function crossEntropy(logits: Float32Array, offset: number, vocab: number, target: number): number {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) if (logits[offset + v] > max) max = logits[offset + v];
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[offset + v] - max);
  return Math.log(sum) + max - logits[offset + target];
}

export async function measureQuality(
  context: EvaluationContext,
  input: QualityInput,
  routing?: RoutingOverride,
  onBatch: () => void = () => undefined,
): Promise<Quality> {
  let nats = 0;
  let tokens = 0;
  let bytes = 0;
  context.resetStats();
  for (let first = 0; first < input.windows.length; first += input.slots) {
    const group = input.windows.slice(first, first + input.slots);
    // A window of n tokens feeds tokens 0..n−2 and predicts tokens 1..n−1 (every fed row is an output row).
    const total = group.reduce((sum, w) => sum + w.length - 1, 0);
    const ids = new Int32Array(total); // [Σ (n_w − 1)]
    const slots = new Int32Array(total);
    const positions = new Int32Array(total);
    const targets = new Int32Array(total);
    let at = 0;
    group.forEach((window, slot) => {
      context.clearSlot(slot);
      for (let t = 0; t + 1 < window.length; t++) {
        ids[at] = window[t];
        slots[at] = slot;
        positions[at] = t;
        targets[at] = window[t + 1];
        at++;
      }
    });
    const rows = Int32Array.from({ length: total }, (_, r) => r);
    const logits = await context.evaluate(ids, slots, positions, rows, routing); // [total, V]
    for (let r = 0; r < total; r++) {
      nats += crossEntropy(logits, r * input.vocabSize, input.vocabSize, targets[r]);
      bytes += input.tokenBytes(targets[r]);
    }
    tokens += total;
    onBatch();
  }
  const stats = context.routingStats();
  const loss = nats / tokens;
  return {
    loss,
    perplexity: Math.exp(loss),
    bits_per_byte: bytes > 0 ? nats / (bytes * Math.LN2) : NaN,
    tokens,
    bytes,
    mean_active_experts: meanActiveExperts(stats.expertCounts, stats.tokens),
    layer_mean_experts: stats.expertCounts.map((layer) => meanActiveExperts([layer], stats.tokens)),
  };
}

/** Experts per token per layer, averaged over layers, from per-layer expert counts over `tokens` tokens. */
export function meanActiveExperts(expertCounts: readonly ArrayLike<number>[], tokens: number): number {
  if (tokens <= 0 || expertCounts.length === 0) return NaN;
  let selections = 0;
  for (const layer of expertCounts) for (let e = 0; e < layer.length; e++) selections += layer[e];
  return selections / tokens / expertCounts.length;
}
