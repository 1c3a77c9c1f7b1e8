/**
 * Training batches and held-out windows over one token stream. The corpus is cut into SPLIT_BLOCKS contiguous
 * blocks and a seeded choice of them is the validation split, so held-out text is long contiguous passages (not
 * scattered sentences that the model saw the neighbours of). Batches are random windows of the training blocks,
 * drawn from a generator keyed by (seed, step) alone: resuming needs only the step number.
 */
import { UserError } from '../errors';
import { rngFor } from './random';

export const SPLIT_BLOCKS = 64;

// Keys that separate the generator streams drawn from one seed.
const SPLIT_STREAM = 0x5eed5b11;
const BATCH_STREAM = 0xba7c4e5;

/** Which of `blocks` blocks are validation: max(1, round(fraction · blocks)) of them, chosen by the seed. */
export function validationBlockMask(seed: number, fraction: number, blocks = SPLIT_BLOCKS): boolean[] {
  const count = Math.min(blocks - 1, Math.max(1, Math.round(fraction * blocks)));
  const order = rngFor(seed, SPLIT_STREAM).shuffle(Array.from({ length: blocks }, (_, i) => i));
  const mask = new Array<boolean>(blocks).fill(false);
  for (const block of order.slice(0, count)) mask[block] = true;
  return mask;
}

export interface DatasetOptions {
  seed: number;
  validationFraction: number;
  /** Token offset where each split block starts (ascending, first 0). Default: SPLIT_BLOCKS equal blocks. */
  blockStarts?: number[];
  /** Bytes of each token id, for bits per byte; `eosId` counts as one byte (a document boundary). */
  tokenBytes: (id: number) => Uint8Array;
  eosId: number;
}

export interface Windows {
  inputs: Int32Array; // [N·T]
  targets: Int32Array; // [N·T], inputs shifted left by one token
  count: number; // N windows
}

/** A maximal run of adjacent blocks on the same side of the split: tokens [start, end). */
interface Run {
  start: number;
  end: number;
}

export class TokenDataset {
  readonly trainRuns: Run[] = [];
  readonly validationRuns: Run[] = [];
  private readonly trainStartsPrefix: number[] = []; // cumulative window-start counts over trainRuns
  private trainStartTotal = -1;
  private trainStartsFor = -1; // seq_len the prefix sums were computed for
  private unigramBits: number | undefined;
  private bytesPerToken: number | undefined;

  constructor(
    readonly tokens: Int32Array, // [N] the whole corpus
    private readonly options: DatasetOptions,
  ) {
    const blocks = options.blockStarts ?? evenBlockStarts(tokens.length, SPLIT_BLOCKS);
    const mask = validationBlockMask(options.seed, options.validationFraction, blocks.length);
    blocks.forEach((start, i) => {
      const end = i + 1 < blocks.length ? blocks[i + 1] : tokens.length;
      const runs = mask[i] ? this.validationRuns : this.trainRuns;
      const last = runs[runs.length - 1];
      if (last && last.end === start) last.end = end;
      else if (end > start) runs.push({ start, end });
    });
  }

  get trainTokenCount(): number {
    return this.trainRuns.reduce((n, run) => n + run.end - run.start, 0);
  }

  get validationTokenCount(): number {
    return this.validationRuns.reduce((n, run) => n + run.end - run.start, 0);
  }

  private prepareTrainStarts(seqLen: number): void {
    if (this.trainStartsFor === seqLen) return;
    this.trainStartsPrefix.length = 0;
    let total = 0;
    for (const run of this.trainRuns) {
      total += Math.max(0, run.end - run.start - seqLen); // a window needs seqLen + 1 tokens
      this.trainStartsPrefix.push(total);
    }
    if (total === 0) {
      throw new UserError(`corpus too small: no training passage has ${seqLen + 1} tokens (seq_len ${seqLen} + 1)`);
    }
    this.trainStartTotal = total;
    this.trainStartsFor = seqLen;
  }

  /**
   * Token offsets where the `batchSize` windows of batch `index` start (with gradient accumulation the index is
   * step · grad_accum + micro-batch). Window b is tokens [start, start + seqLen] (inputs, then the next token as the
   * last target). Uniform over all positions of the training split; none crosses a split boundary. This is the
   * batch order `dsmoe prepare` writes for other engines (src/data/prepared_data.ts).
   */
  trainWindowStarts(index: number, batchSize: number, seqLen: number): number[] {
    this.prepareTrainStarts(seqLen);
    const rng = rngFor(this.options.seed, BATCH_STREAM, index);
    const starts: number[] = [];
    for (let b = 0; b < batchSize; b++) {
      const pick = rng.int(this.trainStartTotal);
      const runIndex = upperBound(this.trainStartsPrefix, pick);
      const before = runIndex > 0 ? this.trainStartsPrefix[runIndex - 1] : 0;
      starts.push(this.trainRuns[runIndex].start + (pick - before));
    }
    return starts;
  }

  /** Batch `index` (see trainWindowStarts): inputs and targets, each [batchSize·seqLen]. */
  trainBatch(index: number, batchSize: number, seqLen: number): { inputs: Int32Array; targets: Int32Array } {
    const inputs = new Int32Array(batchSize * seqLen); // [B·T]
    const targets = new Int32Array(batchSize * seqLen); // [B·T]
    this.trainWindowStarts(index, batchSize, seqLen).forEach((start, b) => {
      inputs.set(this.tokens.subarray(start, start + seqLen), b * seqLen);
      targets.set(this.tokens.subarray(start + 1, start + seqLen + 1), b * seqLen);
    });
    return { inputs, targets };
  }

  /**
   * Non-overlapping held-out windows in text order: window i predicts tokens iT+1 .. iT+T of its passage, so every
   * validation token after a passage's first is predicted once. At most floor(maxTokens / T) windows.
   */
  validationWindows(maxTokens: number, seqLen: number): Windows {
    const starts = this.validationWindowStarts(maxTokens, seqLen);
    const inputs = new Int32Array(starts.length * seqLen); // [N·T]
    const targets = new Int32Array(starts.length * seqLen); // [N·T]
    starts.forEach((start, i) => {
      inputs.set(this.tokens.subarray(start, start + seqLen), i * seqLen);
      targets.set(this.tokens.subarray(start + 1, start + seqLen + 1), i * seqLen);
    });
    return { inputs, targets, count: starts.length };
  }

  /** Token offsets of the held-out windows of validationWindows, in order. */
  validationWindowStarts(maxTokens: number, seqLen: number): number[] {
    const starts: number[] = [];
    const limit = Math.floor(maxTokens / seqLen);
    for (const run of this.validationRuns) {
      for (let start = run.start; start + seqLen < run.end && starts.length < limit; start += seqLen) starts.push(start);
    }
    if (starts.length === 0) {
      throw new UserError(`validation split too small: no held-out passage has ${seqLen + 1} tokens (seq_len ${seqLen} + 1)`);
    }
    return starts;
  }

  private byteLength(id: number): number {
    return id === this.options.eosId ? 1 : this.options.tokenBytes(id).length;
  }

  /** UTF-8 bytes per token over the validation split: bits/byte = (loss in nats / ln 2) / this. */
  get validationBytesPerToken(): number {
    if (this.bytesPerToken === undefined) {
      const lengths = new Map<number, number>();
      let bytes = 0;
      let count = 0;
      for (const run of this.validationRuns) {
        for (let i = run.start; i < run.end; i++) {
          const id = this.tokens[i];
          let length = lengths.get(id);
          if (length === undefined) lengths.set(id, (length = this.byteLength(id)));
          bytes += length;
          count++;
        }
      }
      this.bytesPerToken = bytes / count;
    }
    return this.bytesPerToken;
  }

  /**
   * Entropy in bits per byte of the corpus's byte unigram distribution (<|endoftext|> as one extra symbol):
   * what a model that knows only byte frequencies achieves, the bar a trained model must be well below.
   */
  unigramEntropyBits(): number {
    if (this.unigramBits === undefined) {
      const tokenCounts = new Map<number, number>();
      for (const id of this.tokens) tokenCounts.set(id, (tokenCounts.get(id) ?? 0) + 1);
      const byteCounts = new Float64Array(257);
      for (const [id, count] of tokenCounts) {
        if (id === this.options.eosId) byteCounts[256] += count;
        else for (const byte of this.options.tokenBytes(id)) byteCounts[byte] += count;
      }
      this.unigramBits = entropyBits(byteCounts);
    }
    return this.unigramBits;
  }
}

/**
 * One token sequence cut into non-overlapping windows of `context` tokens (SPEC §7, `--text`): each window is scored
 * on its own from position 0 (token t+1 predicted from tokens 0..t, so context − 1 predictions per window), and a
 * shorter last window (at least 2 tokens) takes the rest. At most `maxTokens` predictions in all (default: every
 * window). Returns the full windows, then the shorter one, as groups of equal length.
 */
export function textWindows(tokens: ArrayLike<number>, context: number, maxTokens = Infinity): Windows[] {
  const fits = Math.floor(tokens.length / context);
  const full = Math.min(fits, Math.floor(maxTokens / (context - 1)));
  const make = (starts: number[], length: number): Windows => {
    const inputs = new Int32Array(starts.length * (length - 1)); // [count·(length−1)]
    const targets = new Int32Array(starts.length * (length - 1)); // [count·(length−1)]
    starts.forEach((start, i) => {
      for (let t = 0; t < length - 1; t++) {
        inputs[i * (length - 1) + t] = tokens[start + t];
        targets[i * (length - 1) + t] = tokens[start + t + 1];
      }
    });
    return { inputs, targets, count: starts.length };
  };
  const groups = [make(Array.from({ length: full }, (_, i) => i * context), context)];
  const rest = tokens.length - full * context;
  if (full === fits && rest >= 2 && full * (context - 1) + rest - 1 <= maxTokens) groups.push(make([full * context], rest));
  return groups.filter((group) => group.count > 0);
}

/** Each window as one token sequence (its inputs, then its last target): the form a from-position-0 scorer reads. */
export function windowSequences(groups: Windows[]): Int32Array[] {
  const sequences: Int32Array[] = [];
  for (const { inputs, targets, count } of groups) {
    const T = inputs.length / count;
    for (let i = 0; i < count; i++) {
      const sequence = new Int32Array(T + 1); // [T + 1]: T predictions
      sequence.set(inputs.subarray(i * T, (i + 1) * T));
      sequence[T] = targets[(i + 1) * T - 1];
      sequences.push(sequence);
    }
  }
  return sequences;
}

/** Shannon entropy, in bits, of the distribution proportional to `counts`. */
export function entropyBits(counts: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  let bits = 0;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] > 0) {
      const p = counts[i] / total;
      bits -= p * Math.log2(p);
    }
  }
  return bits;
}

function evenBlockStarts(length: number, blocks: number): number[] {
  return Array.from({ length: blocks }, (_, i) => Math.floor((i * length) / blocks));
}

/** First index whose value is greater than `value` (prefix sums are ascending). */
function upperBound(sorted: number[], value: number): number {
  let low = 0;
  let high = sorted.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sorted[middle] > value) high = middle;
    else low = middle + 1;
  }
  return low;
}
