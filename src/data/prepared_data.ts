/**
 * Prepared training data (`dsmoe prepare <recipe> --out DIR`): the tokenized corpus and the batch order written once,
 * so that every engine — the tfjs trainer (`dsmoe train --data DIR`) and the PyTorch one (`engines/torch/`) — trains
 * on identical batches without re-implementing tokenization or the seeded batch draw.
 *
 *   DIR/prepared.json          what follows, with the recipe's name, file and hash
 *   DIR/tokens.bin             int32 little-endian token ids of the whole corpus, [tokens]
 *   DIR/batches.bin            int64 little-endian window starts, [micro_batches, batch_size]: row i is batch index i
 *                              (= step · grad_accum + micro-batch), window b is tokens [start, start + seq_len]
 *                              (inputs, then the last target)
 *   DIR/tokenizer.json, DIR/tokenizer_config.json
 *
 * The split into training and held-out passages is the trainer's (src/data/prepare.ts): the held-out window starts
 * and the bytes per held-out token are recorded so that every engine evaluates on the same windows.
 */
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic, writeJsonAtomic } from '../checkpoint/atomic';
import { UserError } from '../errors';
import { recipeHash, type Recipe } from '../recipe';
import { TokenDataset } from './dataset';
import { prepareData } from './prepare';
import { loadTokenizer, type Tokenizer } from './tokenizer';

export const PREPARED_FORMAT = 'dsmoe-prepared';
export const PREPARED_VERSION = 1;
export const preparedFiles = { meta: 'prepared.json', tokens: 'tokens.bin', batches: 'batches.bin' };

export interface PreparedMeta {
  format: typeof PREPARED_FORMAT;
  version: number;
  recipe: { name: string; file: string; hash: string };
  seed: number;
  validation_fraction: number;
  seq_len: number;
  batch_size: number;
  grad_accum: number;
  steps: number; // optimizer steps the batch order covers
  vocab_size: number; // the tokenizer's
  eos_id: number;
  tokens: { file: string; dtype: 'I32'; count: number };
  block_starts: number[]; // token offset of each split block (the held-out choice is made on these blocks)
  batches: { file: string; dtype: 'I64'; shape: [number, number] }; // [micro_batches, batch_size]
  validation: { eval_tokens: number; starts: number[]; bytes_per_token: number };
  corpus_bytes: number;
}

export interface PreparedFolder {
  dir: string;
  meta: PreparedMeta;
  tokenizer: Tokenizer;
  dataset: TokenDataset;
}

/**
 * Tokenizes the recipe's corpus and writes the prepared folder for `steps` optimizer steps (default the recipe's).
 * `tokenizer`: reuse one (a resumed run keeps its BPE vocabulary) instead of building it.
 */
export function writePreparedData(
  dir: string,
  recipe: Recipe,
  options: { steps?: number; tokenizer?: Tokenizer; onProgress?: (line: string) => void } = {},
): PreparedFolder {
  const steps = options.steps ?? recipe.train.max_steps;
  if (!Number.isInteger(steps) || steps <= 0) throw new UserError(`steps must be a positive integer, got ${steps}`);
  const { tokenizer, dataset, corpusBytes, blockStarts } = prepareData(recipe, { tokenizer: options.tokenizer });
  const { seq_len: seqLen } = recipe.data;
  const { batch_size: batchSize, grad_accum: gradAccum, eval_tokens: evalTokens } = recipe.train;
  const microBatches = steps * gradAccum;
  const starts = new BigInt64Array(microBatches * batchSize); // [micro_batches, batch_size]
  for (let index = 0; index < microBatches; index++) {
    dataset.trainWindowStarts(index, batchSize, seqLen).forEach((start, b) => (starts[index * batchSize + b] = BigInt(start)));
    if (options.onProgress && (index + 1) % 100_000 === 0) options.onProgress(`batch order: ${index + 1}/${microBatches} micro-batches`);
  }
  const meta: PreparedMeta = {
    format: PREPARED_FORMAT,
    version: PREPARED_VERSION,
    recipe: { name: recipe.name, file: recipe.file, hash: recipeHash(recipe) },
    seed: recipe.seed,
    validation_fraction: recipe.data.validation_fraction,
    seq_len: seqLen,
    batch_size: batchSize,
    grad_accum: gradAccum,
    steps,
    vocab_size: tokenizer.vocabSize,
    eos_id: tokenizer.eosId,
    tokens: { file: preparedFiles.tokens, dtype: 'I32', count: dataset.tokens.length },
    block_starts: blockStarts,
    batches: { file: preparedFiles.batches, dtype: 'I64', shape: [microBatches, batchSize] },
    validation: {
      eval_tokens: evalTokens,
      starts: dataset.validationWindowStarts(evalTokens, seqLen),
      bytes_per_token: dataset.validationBytesPerToken,
    },
    corpus_bytes: corpusBytes,
  };
  fs.mkdirSync(dir, { recursive: true });
  tokenizer.save(dir); // as the trainer saves it with every checkpoint
  writeFileAtomic(path.join(dir, preparedFiles.tokens), littleEndianBytes(dataset.tokens));
  writeFileAtomic(path.join(dir, preparedFiles.batches), littleEndianBytes(starts));
  writeJsonAtomic(path.join(dir, preparedFiles.meta), meta); // last: a folder with prepared.json is complete
  return { dir, meta, tokenizer, dataset };
}

/**
 * Reads a prepared folder for `recipe`: checks it was made from this recipe (same hash) and that its files have the
 * recorded sizes, and rebuilds the trainer's dataset over its tokens (same split, same batches).
 */
export function readPreparedData(dir: string, recipe: Recipe, options: { steps?: number } = {}): PreparedFolder {
  const metaFile = path.join(dir, preparedFiles.meta);
  if (!fs.existsSync(metaFile)) throw new UserError(`${dir}: not a prepared data folder (no ${preparedFiles.meta}); make one with dsmoe prepare`);
  let meta: PreparedMeta;
  try {
    meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as PreparedMeta;
  } catch (error) {
    throw new UserError(`${metaFile}: not valid JSON (${(error as Error).message})`);
  }
  if (meta.format !== PREPARED_FORMAT || meta.version !== PREPARED_VERSION) {
    throw new UserError(`${metaFile}: format ${JSON.stringify(meta.format)} version ${meta.version}, expected ${PREPARED_FORMAT} version ${PREPARED_VERSION}`);
  }
  const hash = recipeHash(recipe);
  if (meta.recipe?.hash !== hash) {
    throw new UserError(
      `${metaFile}: prepared from recipe ${meta.recipe?.name} (hash ${String(meta.recipe?.hash).slice(0, 12)}…), ` +
        `${recipe.file} has hash ${hash.slice(0, 12)}…; run dsmoe prepare again`,
    );
  }
  const steps = options.steps ?? recipe.train.max_steps;
  if (meta.steps < steps) {
    throw new UserError(`${metaFile}: the batch order covers ${meta.steps} steps, the run needs ${steps}; run dsmoe prepare with --max-steps ${steps}`);
  }
  const tokens = new Int32Array(readSized(path.join(dir, meta.tokens.file), meta.tokens.count * 4).buffer); // [N]
  readSized(path.join(dir, meta.batches.file), meta.batches.shape[0] * meta.batches.shape[1] * 8); // size check only
  const tokenizer = loadTokenizer(dir);
  if (tokenizer.vocabSize !== meta.vocab_size) {
    throw new UserError(`${dir}/tokenizer.json: ${tokenizer.vocabSize} tokens, ${preparedFiles.meta} says ${meta.vocab_size}`);
  }
  const dataset = new TokenDataset(tokens, {
    seed: meta.seed,
    validationFraction: meta.validation_fraction,
    blockStarts: meta.block_starts,
    tokenBytes: (id) => tokenizer.tokenBytes(id),
    eosId: tokenizer.eosId,
  });
  return { dir, meta, tokenizer, dataset };
}

/** The batch order of a prepared folder: window starts of batch `index`. */
export function readBatchStarts(data: PreparedFolder, index: number): number[] {
  const [rows, batchSize] = data.meta.batches.shape;
  if (!(index >= 0 && index < rows)) throw new Error(`batch index ${index} outside 0..${rows - 1}`);
  const fd = fs.openSync(path.join(data.dir, data.meta.batches.file), 'r');
  try {
    const bytes = Buffer.alloc(batchSize * 8);
    fs.readSync(fd, bytes, 0, bytes.length, index * batchSize * 8);
    return Array.from({ length: batchSize }, (_, b) => Number(bytes.readBigInt64LE(b * 8)));
  } finally {
    fs.closeSync(fd);
  }
}

function readSized(file: string, expected: number): Buffer {
  if (!fs.existsSync(file)) throw new UserError(`${file}: missing; run dsmoe prepare again`);
  const size = fs.statSync(file).size;
  if (size !== expected) throw new UserError(`${file}: ${size} bytes, expected ${expected}; run dsmoe prepare again`);
  const bytes = fs.readFileSync(file);
  // A fresh, aligned copy: typed arrays over a Buffer's pool need 4-byte alignment.
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return Buffer.from(copy.buffer);
}

function littleEndianBytes(values: Int32Array | BigInt64Array): Uint8Array {
  if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new Error('prepared data is written on little-endian machines only');
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}
