import { TokenWindows } from './evaluate';

/**
 * What the trainer needs from `src/data` (its Tokenizer and TokenDataset satisfy these structurally), so the
 * trainer can be tested with small in-memory doubles.
 */
export interface TrainingTokenizer {
  vocabSize: number;
  eosId: number;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
  save(dir: string): void;
}

export interface TrainingDataset {
  /** Batch of `batchSize` windows of `seqLen` tokens; a pure function of (seed, index). */
  trainBatch(index: number, batchSize: number, seqLen: number): { inputs: Int32Array; targets: Int32Array };
  validationWindows(maxTokens: number, seqLen: number): TokenWindows;
  /** UTF-8 bytes per token of the validation split (bits/byte = loss / ln 2 / this) */
  validationBytesPerToken: number;
}
