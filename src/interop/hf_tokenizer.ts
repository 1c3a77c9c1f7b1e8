/**
 * A reader for the byte-level BPE tokenizers of Hugging Face `tokenizer.json` files beyond dsmoe's own
 * (GPT-2, GPT-NeoX/OLMoE, Qwen2): any end-of-text token, added/special tokens matched before BPE, the ByteLevel
 * pre-tokenizer alone or after a `Split` regex (Qwen2's), an NFC normalizer, string or pair merges and
 * `ignore_merges`. SentencePiece-style tokenizers (Metaspace pre-tokenizer, byte_fallback: Mixtral, Llama 2) are
 * refused here; `loadAnyTokenizer` reads them through `@huggingface/tokenizers` (src/interop/hf_package_tokenizer.ts).
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { writeFileAtomic } from '../checkpoint/atomic';
import { readJsonFile } from '../checkpoint/files';
import { BYTE_TO_CHAR, PRETOKENIZE, bytesToVocabString, vocabStringToBytes } from '../data/byte_level';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer';
import { jsRegex } from './hf_regex';
import { loadPackageTokenizer } from './hf_package_tokenizer';
import { endOfTextId, promptBosId, readTokenizerConfig } from './hf_special_tokens';

type Json = Record<string, unknown>;

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

/**
 * The tokenizer of a model folder, dsmoe's or imported: dsmoe's own files first (their reader is pinned by tests),
 * then the byte-level BPE reader below (GPT-2, GPT-NeoX/OLMoE, Qwen2), then @huggingface/tokenizers for everything
 * those refuse (SentencePiece-style BPE and Unigram: src/interop/hf_package_tokenizer.ts).
 */
export function loadAnyTokenizer(dir: string): Tokenizer {
  try {
    return loadTokenizer(dir);
  } catch (ownError) {
    const file = path.join(dir, 'tokenizer.json');
    if (!(ownError instanceof UserError) || !fs.existsSync(file)) throw ownError;
    const json = readJsonFile(file) as Json; // unreadable or invalid JSON: that one message
    let byteLevelError: UserError;
    try {
      return loadHfTokenizer(dir);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      byteLevelError = error;
    }
    try {
      return loadPackageTokenizer(dir, json);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      // both messages: the byte-level reader's says what it expected, the package's why it could not either
      throw new UserError(`${error.message} (dsmoe's byte-level reader: ${byteLevelError.message.replace(`${file}: `, '')})`);
    }
  }
}

export function loadHfTokenizer(dir: string): Tokenizer {
  const file = path.join(dir, 'tokenizer.json');
  const json = readJsonFile(file) as Json;
  const fail = (message: string): never => {
    throw new UserError(`${file}: ${message}`);
  };
  const model = (json.model ?? {}) as Json;
  if (model.type !== 'BPE') fail(`model.type ${JSON.stringify(model.type)}: only BPE tokenizers are read here (loadAnyTokenizer reads others through @huggingface/tokenizers)`);
  if (model.byte_fallback === true) fail('a SentencePiece-style BPE (byte_fallback) is not byte-level (loadAnyTokenizer reads it through @huggingface/tokenizers)');
  const normalizer = (json.normalizer ?? null) as Json | null;
  if (normalizer && normalizer.type !== 'NFC') fail(`normalizer ${JSON.stringify(normalizer.type)} is not supported (only none or NFC)`);
  const splitters = preTokenizer(json.pre_tokenizer as Json | null, fail);

  const vocab = model.vocab as Record<string, number>;
  if (!vocab || typeof vocab !== 'object') fail('model.vocab: expected an object of token → id');
  const added: AddedToken[] = (Array.isArray(json.added_tokens) ? (json.added_tokens as Json[]) : []).map((t) => ({
    id: t.id as number,
    content: String(t.content),
    special: t.special === true,
  }));
  const tokenText: string[] = [];
  for (const [text, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || id < 0) fail(`model.vocab[${JSON.stringify(text)}]: expected a non-negative integer id`);
    tokenText[id] = text;
  }
  const addedById = new Map(added.map((t) => [t.id, t]));
  for (let byte = 0; byte < 256; byte++) {
    if (!(BYTE_TO_CHAR[byte] in vocab)) fail(`model.vocab: byte ${byte} has no token (not a byte-level BPE)`);
  }
  const rawMerges = Array.isArray(model.merges) ? (model.merges as unknown[]) : fail('model.merges: expected an array');
  const mergeRank = new Map<string, number>();
  (rawMerges as unknown[]).forEach((entry, rank) => {
    const pair = (typeof entry === 'string' ? entry.split(' ') : entry) as unknown[];
    if (!Array.isArray(pair) || pair.length !== 2) fail(`model.merges[${rank}]: expected "left right", got ${JSON.stringify(entry)}`);
    const key = `${String(pair[0])} ${String(pair[1])}`;
    if (!mergeRank.has(key)) mergeRank.set(key, rank);
  });
  const vocabSize = Math.max(tokenText.length, ...added.map((t) => t.id + 1));
  const eosId = endOfTextId(dir, (content) => added.find((t) => t.content === content)?.id ?? vocab[content], fail);
  const bosId = promptBosId(json, readTokenizerConfig(dir, fail), (content) => added.find((t) => t.content === content)?.id ?? vocab[content], fail);
  const tokenizer = new HfByteLevelBpe(json, vocab, tokenText, addedById, added, mergeRank, splitters, normalizer !== null, model.ignore_merges === true, vocabSize, eosId);
  if (bosId !== undefined) tokenizer.bosId = bosId; // e.g. Llama 3's <|begin_of_text|>; GPT-2 and Qwen2 have none
  return tokenizer;
}

/** The pre-tokenizer as a list of regexes applied in turn (each keeps its matches, 'Isolated'). */
function preTokenizer(pre: Json | null, fail: (m: string) => never): RegExp[] {
  if (!pre) return fail('pre_tokenizer: expected ByteLevel (only byte-level BPE is read)');
  const steps = pre.type === 'Sequence' ? (pre.pretokenizers as Json[]) : [pre];
  const regexes: RegExp[] = [];
  let byteLevel = false;
  for (const step of steps) {
    if (step.type === 'Split') {
      const pattern = step.pattern as Json;
      if (step.behavior !== 'Isolated' || step.invert === true) fail(`pre_tokenizer Split: only behavior "Isolated" is supported, got ${JSON.stringify(step.behavior)}`);
      regexes.push(typeof pattern.Regex === 'string' ? jsRegex(pattern.Regex) : new RegExp(escapeRegex(String(pattern.String)), 'gu'));
    } else if (step.type === 'ByteLevel') {
      if (step.add_prefix_space === true) fail('pre_tokenizer ByteLevel with add_prefix_space is not supported');
      if (step.use_regex !== false) regexes.push(PRETOKENIZE);
      byteLevel = true;
    } else {
      fail(`pre_tokenizer ${JSON.stringify(step.type)} is not supported here (loadAnyTokenizer reads it through @huggingface/tokenizers)`);
    }
  }
  if (!byteLevel) fail('pre_tokenizer: no ByteLevel step (only byte-level BPE is read)');
  return regexes;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

class HfByteLevelBpe implements Tokenizer {
  readonly kind = 'bpe' as const;
  private readonly cache = new Map<string, number[]>();
  private readonly addedPattern: RegExp | null;
  bosId?: number;

  constructor(
    private readonly json: Json,
    private readonly vocab: Record<string, number>,
    private readonly tokenText: string[],
    private readonly addedById: Map<number, AddedToken>,
    added: AddedToken[],
    private readonly mergeRank: Map<string, number>,
    private readonly splitters: RegExp[],
    private readonly nfc: boolean,
    private readonly ignoreMerges: boolean,
    readonly vocabSize: number,
    readonly eosId: number,
  ) {
    // longest first, so that a token that is a prefix of another never wins
    const contents = added.map((t) => t.content).sort((a, b) => b.length - a.length);
    this.addedPattern = contents.length ? new RegExp(contents.map(escapeRegex).join('|'), 'g') : null;
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    let last = 0;
    const plain = (part: string) => {
      if (part.length) for (const id of this.encodePlain(this.nfc ? part.normalize('NFC') : part)) ids.push(id);
    };
    if (this.addedPattern) {
      for (const match of text.matchAll(this.addedPattern)) {
        plain(text.slice(last, match.index));
        ids.push(this.added(match[0]));
        last = match.index! + match[0].length;
      }
    }
    plain(text.slice(last));
    return ids;
  }

  private added(content: string): number {
    for (const [id, token] of this.addedById) if (token.content === content) return id;
    throw new Error(`added token ${content} vanished`);
  }

  private encodePlain(text: string): number[] {
    let pieces = [text];
    for (const regex of this.splitters) {
      pieces = pieces.flatMap((piece) => Array.from(piece.matchAll(new RegExp(regex.source, regex.flags)), (m) => m[0]));
    }
    return pieces.flatMap((piece) => this.encodeWord(bytesToVocabString(Buffer.from(piece, 'utf8'))));
  }

  /** BPE over byte-level characters: merge the adjacent pair of lowest rank, leftmost first, until none applies. */
  private encodeWord(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    let ids: number[];
    if (this.ignoreMerges && word in this.vocab) {
      ids = [this.vocab[word]];
    } else {
      const symbols = Array.from(word);
      for (;;) {
        let bestRank = Infinity;
        let bestAt = -1;
        for (let i = 0; i + 1 < symbols.length; i++) {
          const rank = this.mergeRank.get(`${symbols[i]} ${symbols[i + 1]}`);
          if (rank !== undefined && rank < bestRank) {
            bestRank = rank;
            bestAt = i;
          }
        }
        if (bestAt < 0) break;
        symbols.splice(bestAt, 2, symbols[bestAt] + symbols[bestAt + 1]);
      }
      ids = symbols.map((s) => {
        const id = this.vocab[s];
        if (id === undefined) throw new UserError(`tokenizer.json: merge result ${JSON.stringify(s)} is not in the vocabulary`);
        return id;
      });
    }
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }

  tokenBytes(id: number): Uint8Array {
    const added = this.addedById.get(id);
    if (added) return new TextEncoder().encode(added.content);
    const text = Number.isInteger(id) ? this.tokenText[id] : undefined;
    const bytes = text === undefined ? undefined : vocabStringToBytes(text);
    if (!bytes) throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    return bytes;
  }

  decode(ids: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i++) parts.push(this.tokenBytes(ids[i]));
    return Buffer.concat(parts).toString('utf8');
  }

  toHfJson(): object {
    return this.json;
  }

  save(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'tokenizer.json');
    writeFileAtomic(file, JSON.stringify(this.json));
  }
}
