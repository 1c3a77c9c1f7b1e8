/**
 * Byte-level BPE training (as GPT-2 / Hugging Face tokenizers do it): pre-split the text into words with the
 * GPT-2 regex, count unique words, then repeatedly merge the most frequent adjacent token pair. Pair counts are
 * kept incrementally (only the words containing the merged pair are revisited) and the most frequent pair comes
 * from a max-heap with lazy deletion, so 4096 merges on a few MB take seconds.
 */
import { PRETOKENIZE, splitOnEos } from './byte_level';

export interface BpeModel {
  tokenBytes: Uint8Array[]; // by id; ids 0..255 are the single bytes
  merges: [left: number, right: number, result: number][]; // in rank order
}

/** Pairs rarer than this are not merged: a merge seen once only memorises one word. */
const MIN_PAIR_COUNT = 2;

const PAIR_KEY = 2 ** 21; // pair key = left · 2^21 + right (ids < 2^21)

/** Max-heap of (count, pair key): larger count first, then smaller key, so training is deterministic. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.counts.length;
  }

  private above(i: number, j: number): boolean {
    return this.counts[i] > this.counts[j] || (this.counts[i] === this.counts[j] && this.keys[i] < this.keys[j]);
  }

  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): { count: number; key: number } {
    const top = { count: this.counts[0], key: this.keys[0] };
    const lastCount = this.counts.pop()!;
    const lastKey = this.keys.pop()!;
    if (this.counts.length) {
      this.counts[0] = lastCount;
      this.keys[0] = lastKey;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let best = i;
        if (left < this.counts.length && this.above(left, best)) best = left;
        if (right < this.counts.length && this.above(right, best)) best = right;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/** Unique pre-tokenized words of the texts with their frequencies (EOS tokens split documents, never merged). */
function countWords(texts: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const part of splitOnEos(text)) {
      for (const match of part.matchAll(PRETOKENIZE)) {
        const word = match[0];
        counts.set(word, (counts.get(word) ?? 0) + 1);
      }
    }
  }
  return counts;
}

/**
 * Learns merges until the vocabulary holds `maxTokens` tokens (bytes included) or no pair occurs twice.
 * A merge whose bytes equal an existing token reuses that token's id, as Hugging Face's trainer does.
 */
export function trainBpe(texts: string[], maxTokens: number): BpeModel {
  const tokenBytes: Uint8Array[] = [];
  const idOfBytes = new Map<string, number>(); // latin1 string of the bytes → id
  for (let byte = 0; byte < 256; byte++) {
    tokenBytes.push(Uint8Array.of(byte));
    idOfBytes.set(String.fromCharCode(byte), byte);
  }
  const merges: BpeModel['merges'] = [];
  if (maxTokens <= 256) return { tokenBytes, merges };

  const encoder = new TextEncoder();
  const words: number[][] = [];
  const frequency: number[] = [];
  for (const [word, count] of countWords(texts)) {
    words.push(Array.from(encoder.encode(word)));
    frequency.push(count);
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>(); // may hold words that no longer contain the pair
  const changed = new Set<number>();
  const addPair = (left: number, right: number, delta: number, word: number) => {
    const key = left * PAIR_KEY + right;
    const count = (pairCount.get(key) ?? 0) + delta;
    if (count > 0) pairCount.set(key, count);
    else pairCount.delete(key);
    changed.add(key);
    if (delta > 0) {
      let set = pairWords.get(key);
      if (!set) pairWords.set(key, (set = new Set()));
      set.add(word);
    }
  };
  words.forEach((symbols, w) => {
    for (let i = 0; i + 1 < symbols.length; i++) addPair(symbols[i], symbols[i + 1], frequency[w], w);
  });
  const heap = new PairHeap();
  for (const [key, count] of pairCount) heap.push(count, key);
  changed.clear();

  while (tokenBytes.length < maxTokens && heap.size) {
    const { count, key } = heap.pop();
    if (pairCount.get(key) !== count) continue; // stale entry: the count changed since it was pushed
    if (count < MIN_PAIR_COUNT) break;
    const left = Math.floor(key / PAIR_KEY);
    const right = key % PAIR_KEY;
    const bytes = new Uint8Array(tokenBytes[left].length + tokenBytes[right].length);
    bytes.set(tokenBytes[left]);
    bytes.set(tokenBytes[right], tokenBytes[left].length);
    const latin1 = Buffer.from(bytes).toString('latin1');
    let id = idOfBytes.get(latin1);
    if (id === undefined) {
      id = tokenBytes.length;
      tokenBytes.push(bytes);
      idOfBytes.set(latin1, id);
    }
    merges.push([left, right, id]);

    for (const w of [...(pairWords.get(key) ?? [])]) {
      const symbols = words[w];
      let present = false;
      for (let i = 0; i + 1 < symbols.length && !present; i++) present = symbols[i] === left && symbols[i + 1] === right;
      if (!present) continue;
      const f = frequency[w];
      for (let i = 0; i + 1 < symbols.length; i++) addPair(symbols[i], symbols[i + 1], -f, w);
      const merged: number[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
          merged.push(id);
          i++;
        } else {
          merged.push(symbols[i]);
        }
      }
      words[w] = merged;
      for (let i = 0; i + 1 < merged.length; i++) addPair(merged[i], merged[i + 1], f, w);
    }
    pairWords.delete(key);
    for (const changedKey of changed) {
      const current = pairCount.get(changedKey);
      if (current !== undefined) heap.push(current, changedKey);
    }
    changed.clear();
  }
  return { tokenBytes, merges };
}
