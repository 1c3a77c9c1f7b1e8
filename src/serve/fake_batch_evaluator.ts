import type { BatchEvaluator } from './batch_evaluator';

/**
 * A deterministic stand-in for the native context, for testing the scheduler and server without the addon.
 * A row's logits are a hash of its slot's whole token history, so they depend only on that sequence (as the real
 * model's do) and never on the batch; positions are checked like a KV cache would need them.
 */
export class FakeBatchEvaluator implements BatchEvaluator {
  /** Per slot: the running hash after each position. */
  private readonly prefixHashes: number[][];
  /** Rows (tokens) of every evaluate call, to check that requests really were batched. */
  readonly batchSizes: number[] = [];
  /** Slots of the last call, and how many slots decoded together at most. */
  maxSlotsInOneCall = 0;
  clearedSlots: number[] = [];

  constructor(
    readonly vocabSize: number,
    readonly slots: number,
    readonly eosId: number,
    /** Milliseconds each call takes, to emulate compute (the event loop stays free, as with the addon). */
    private readonly delayMs = 0,
  ) {
    this.prefixHashes = Array.from({ length: slots }, () => []);
  }

  async evaluate(tokens: Int32Array, slots: Int32Array, positions: Int32Array, outputRows: Int32Array): Promise<Float32Array> {
    const n = tokens.length;
    if (slots.length !== n || positions.length !== n) throw new Error('tokens, slots and positions differ in length');
    this.batchSizes.push(n);
    this.maxSlotsInOneCall = Math.max(this.maxSlotsInOneCall, new Set(slots).size);
    const rowHash = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const slot = slots[i];
      if (slot < 0 || slot >= this.slots) throw new Error(`slot ${slot} out of range`);
      if (tokens[i] < 0 || tokens[i] >= this.vocabSize) throw new Error(`token ${tokens[i]} out of range`);
      const history = this.prefixHashes[slot];
      if (positions[i] !== history.length) {
        throw new Error(`slot ${slot} holds ${history.length} positions, got position ${positions[i]}`);
      }
      const previous = history.length ? history[history.length - 1] : 0x811c9dc5;
      history.push(mix(previous, tokens[i]));
      rowHash[i] = history[history.length - 1];
    }
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    else await new Promise((resolve) => setImmediate(resolve));
    const V = this.vocabSize;
    const logits = new Float32Array(outputRows.length * V); // [rows, V]
    outputRows.forEach((row, r) => {
      if (row < 0 || row >= n) throw new Error(`output row ${row} out of range`);
      let state = rowHash[row];
      for (let v = 0; v < V; v++) {
        state = mix(state, v);
        const noise = state / 4294967296; // [0, 1)
        // Printable ASCII is likelier, so greedy text is readable; end-of-text is rare but possible.
        const bias = v === this.eosId ? -1.5 : v >= 32 && v < 127 ? 2 : 0;
        logits[r * V + v] = 3 * noise + bias;
      }
    });
    return logits;
  }

  clearSlot(slot: number): void {
    this.prefixHashes[slot] = [];
    this.clearedSlots.push(slot);
  }
}

function mix(hash: number, value: number): number {
  let h = Math.imul(hash ^ value, 0x01000193) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  h ^= h >>> 12;
  return h >>> 0;
}
