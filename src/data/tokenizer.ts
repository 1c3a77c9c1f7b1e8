/**
 * The tokenizer saved with every checkpoint: byte-level BPE in Hugging Face `tokenizer.json` form. The byte
 * tokenizer is the same thing with no merges (ids 0..255 are the bytes, 256 is <|endoftext|>), so one class
 * encodes, decodes, saves and loads both, and HF tokenizers can load either file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { writeFileAtomic } from '../checkpoint/atomic';
import { readJsonFile } from '../checkpoint/files';
import { BYTE_TO_CHAR, EOS_TOKEN, PRETOKENIZE, bytesToVocabString, splitOnEos, vocabStringToBytes } from './byte_level';
import { trainBpe } from './bpe_trainer';

export interface Tokenizer {
  kind: 'byte' | 'bpe' | 'unigram';
  vocabSize: number; // ids are 0..vocabSize-1
  eosId: number;
  /**
   * The token put before a prompt, as transformers' `tokenizer(text)` does (add_special_tokens=True): `<s>` of
   * imported Llama/Mistral/Mixtral tokenizers. Absent for tokenizers that add none: dsmoe's own, GPT-2, Qwen2.
   */
  bosId?: number;
  /** The text's own ids (add_special_tokens=False): special tokens written in it are matched, nothing is added. */
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
  /** The bytes a token stands for (<|endoftext|> → its own text). */
  tokenBytes(id: number): Uint8Array;
  toHfJson(): object;
  save(dir: string, options?: { modelMaxLength?: number }): void;
}

/** A prompt as the model reads it: the tokenizer's BOS (when it adds one), then the text's ids. */
export function encodePrompt(tokenizer: { encode(text: string): number[]; bosId?: number }, text: string): number[] {
  const ids = tokenizer.encode(text);
  return tokenizer.bosId === undefined ? ids : [tokenizer.bosId, ...ids];
}

export interface TokenizerSpec {
  type: 'byte' | 'bpe';
  vocab_size: number; // bpe: upper bound on the vocabulary, <|endoftext|> included
}

const PAIR_KEY = 2 ** 21;
const WORD_CACHE_LIMIT = 200_000;

class ByteLevelBpe implements Tokenizer {
  readonly kind: 'byte' | 'bpe';
  readonly vocabSize: number;
  private readonly byteToId: Int32Array; // [256]
  private readonly mergeRank = new Map<number, number>(); // pair key → rank
  private readonly wordCache = new Map<string, number[]>();
  private readonly eosBytes = new TextEncoder().encode(EOS_TOKEN);

  /** `tokens[id]` are the bytes of each id except `eosId`; merges are [left, right, result] in rank order. */
  constructor(
    private readonly tokens: (Uint8Array | undefined)[],
    private readonly merges: [number, number, number][],
    readonly eosId: number,
  ) {
    this.kind = merges.length ? 'bpe' : 'byte';
    this.vocabSize = tokens.length;
    this.byteToId = new Int32Array(256).fill(-1);
    tokens.forEach((bytes, id) => {
      if (bytes && bytes.length === 1 && this.byteToId[bytes[0]] < 0) this.byteToId[bytes[0]] = id;
    });
    merges.forEach(([left, right], rank) => {
      const key = left * PAIR_KEY + right;
      if (!this.mergeRank.has(key)) this.mergeRank.set(key, rank);
    });
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    splitOnEos(text).forEach((part, index) => {
      if (index > 0) ids.push(this.eosId);
      if (this.merges.length === 0) {
        for (const byte of Buffer.from(part, 'utf8')) ids.push(this.byteToId[byte]);
        return;
      }
      for (const match of part.matchAll(PRETOKENIZE)) {
        for (const id of this.encodeWord(match[0])) ids.push(id);
      }
    });
    return ids;
  }

  /**
   * Hugging Face's BPE: repeatedly merge the adjacent pair of lowest rank, leftmost first, until none applies.
   */
  private encodeWord(word: string): number[] {
    const cached = this.wordCache.get(word);
    if (cached) return cached;
    const symbols = Array.from(Buffer.from(word, 'utf8'), (byte) => this.byteToId[byte]);
    for (;;) {
      let bestRank = Infinity;
      let bestAt = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.mergeRank.get(symbols[i] * PAIR_KEY + symbols[i + 1]);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      symbols.splice(bestAt, 2, this.merges[bestRank][2]);
    }
    if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
    this.wordCache.set(word, symbols);
    return symbols;
  }

  tokenBytes(id: number): Uint8Array {
    if (id === this.eosId) return this.eosBytes;
    const bytes = Number.isInteger(id) ? this.tokens[id] : undefined;
    if (!bytes) throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    return bytes;
  }

  decode(ids: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i++) parts.push(this.tokenBytes(ids[i]));
    return Buffer.concat(parts).toString('utf8'); // a cut inside a UTF-8 sequence decodes to U+FFFD
  }

  toHfJson(): object {
    const vocab: Record<string, number> = {};
    this.tokens.forEach((bytes, id) => {
      if (bytes && id !== this.eosId) vocab[bytesToVocabString(bytes)] = id;
    });
    vocab[EOS_TOKEN] = this.eosId;
    const name = (id: number) => bytesToVocabString(this.tokenBytes(id));
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [
        { id: this.eosId, content: EOS_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      ],
      normalizer: null,
      pre_tokenizer: byteLevel,
      post_processor: { ...byteLevel, trim_offsets: false },
      decoder: byteLevel,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        vocab,
        merges: this.merges.map(([left, right]) => `${name(left)} ${name(right)}`),
      },
    };
  }

  save(dir: string, options: { modelMaxLength?: number } = {}): void {
    fs.mkdirSync(dir, { recursive: true });
    const eosEntry = { content: EOS_TOKEN, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
    const config: Record<string, unknown> = {
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: null,
      eos_token: EOS_TOKEN,
      unk_token: null,
      pad_token: null,
      add_prefix_space: false,
      clean_up_tokenization_spaces: false,
      added_tokens_decoder: { [String(this.eosId)]: eosEntry },
    };
    if (options.modelMaxLength !== undefined) config.model_max_length = options.modelMaxLength;
    writeJsonAtomic(path.join(dir, 'tokenizer.json'), this.toHfJson());
    writeJsonAtomic(path.join(dir, 'tokenizer_config.json'), config);
  }
}

function writeJsonAtomic(file: string, value: object): void {
  writeFileAtomic(file, JSON.stringify(value, null, 1) + '\n'); // indent 1: a BPE vocabulary is long
}

/** The byte tokenizer, or a BPE trained on `trainingTexts` (the training split only). */
export function buildTokenizer(spec: TokenizerSpec, trainingTexts: string | string[]): Tokenizer {
  if (spec.type === 'byte') {
    const tokens = Array.from({ length: 256 }, (_, byte) => Uint8Array.of(byte));
    return new ByteLevelBpe([...tokens, undefined], [], 256);
  }
  const texts = typeof trainingTexts === 'string' ? [trainingTexts] : trainingTexts;
  const model = trainBpe(texts, spec.vocab_size - 1); // the last id is <|endoftext|>
  return new ByteLevelBpe([...model.tokenBytes, undefined], model.merges, model.tokenBytes.length);
}

/** Reads `dir/tokenizer.json` (a byte-level BPE in Hugging Face format), validating it. */
export function loadTokenizer(dir: string): Tokenizer {
  const file = path.join(dir, 'tokenizer.json');
  const json = readJsonFile(file) as Record<string, unknown>;
  const fail = (message: string): never => {
    throw new UserError(`${file}: ${message}`);
  };
  const model = json.model as Record<string, unknown> | undefined;
  if (!model || model.type !== 'BPE') fail(`model.type: expected "BPE", got ${JSON.stringify(model?.type)}`);
  const preTokenizer = json.pre_tokenizer as Record<string, unknown> | null;
  if (!preTokenizer || preTokenizer.type !== 'ByteLevel' || preTokenizer.add_prefix_space === true) {
    fail('pre_tokenizer: expected ByteLevel without add_prefix_space (only byte-level BPE is supported)');
  }
  const vocab = model!.vocab as Record<string, unknown>;
  if (!vocab || typeof vocab !== 'object') fail('model.vocab: expected an object of token → id');

  const added = Array.isArray(json.added_tokens) ? (json.added_tokens as Record<string, unknown>[]) : [];
  const eos = added.find((token) => token.content === EOS_TOKEN);
  const eosId = typeof eos?.id === 'number' ? eos.id : typeof vocab[EOS_TOKEN] === 'number' ? (vocab[EOS_TOKEN] as number) : -1;
  if (eosId < 0) fail(`no ${EOS_TOKEN} token in added_tokens or the vocabulary`);

  const tokens: (Uint8Array | undefined)[] = [];
  const idOf = new Map<string, number>();
  for (const [text, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) fail(`model.vocab[${JSON.stringify(text)}]: expected a non-negative integer id, got ${JSON.stringify(id)}`);
    idOf.set(text, id as number);
    if (id === eosId) continue;
    const bytes = vocabStringToBytes(text);
    if (!bytes) fail(`model.vocab: token ${JSON.stringify(text)} is not a byte-level string`);
    tokens[id as number] = bytes;
  }
  if (eosId >= tokens.length) tokens.length = eosId + 1;
  for (let byte = 0; byte < 256; byte++) {
    if (!idOf.has(BYTE_TO_CHAR[byte])) fail(`model.vocab: byte ${byte} (${JSON.stringify(BYTE_TO_CHAR[byte])}) has no token`);
  }

  const rawMerges = Array.isArray(model!.merges) ? (model!.merges as unknown[]) : fail('model.merges: expected an array');
  const merges = (rawMerges as unknown[]).map((entry, rank): [number, number, number] => {
    const pair = typeof entry === 'string' ? entry.split(' ') : entry;
    if (!Array.isArray(pair) || pair.length !== 2) fail(`model.merges[${rank}]: expected "left right", got ${JSON.stringify(entry)}`);
    const [left, right] = pair as [string, string];
    const ids = [idOf.get(left), idOf.get(right), idOf.get(left + right)];
    if (ids.some((id) => id === undefined)) fail(`model.merges[${rank}]: ${JSON.stringify(entry)} names a token missing from the vocabulary`);
    return ids as [number, number, number];
  });
  return new ByteLevelBpe(tokens, merges, eosId);
}
