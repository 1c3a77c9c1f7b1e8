/**
 * Hugging Face `tokenizer.json` files that dsmoe's own readers do not cover, read by the npm package
 * `@huggingface/tokenizers` (the Hugging Face JS port of tokenizers, the one transformers.js uses) behind dsmoe's
 * `Tokenizer` interface: SentencePiece-style BPE (byte_fallback with the legacy Prepend/Replace normalizer or a
 * Metaspace pre-tokenizer: Llama 2, Mistral, Mixtral), Unigram (SpmConverter files), and byte-level BPE that
 * dsmoe's byte-level reader refuses. Checked against sentencepiece's own ids and a published Mistral file
 * (test/interop/hf_package_tokenizer.test.ts).
 *
 * `encode` is transformers' `tokenizer(text, add_special_tokens=False)`: added/special tokens written in the text
 * are matched, nothing is added. `bosId` is what `tokenizer(text)` puts first (promptBosId: the file's
 * post_processor, or tokenizer_config.json's add_bos_token for Llama-family classes); `encodePrompt` adds it. `decode` is transformers'
 * `decode(ids)` without clean-up (the leading-space rule of the file's decoder applies: a Llama-style decoder drops
 * the space its normalizer put before the first word). `tokenBytes` is what a token adds to running text: "▁" is a
 * space and `<0xNN>` the byte NN, so a continuation joined from tokenBytes keeps its spaces.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as PackageTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors';
import { writeFileAtomic } from '../checkpoint/atomic';
import { vocabStringToBytes } from '../data/byte_level';
import type { Tokenizer } from '../data/tokenizer';
import { endOfTextId, promptBosId, readTokenizerConfig } from './hf_special_tokens';

type Json = Record<string, unknown>;

/**
 * How a vocabulary string maps to the bytes it stands for, from the file's decoder: byte-level strings (GPT-2's
 * byte table), SentencePiece pieces (`replacement`, usually "▁", is a space; `<0xNN>` the byte), or whatever the
 * decoder makes of the token alone.
 */
type PieceBytes = { kind: 'byte-level' } | { kind: 'metaspace'; replacement: string } | { kind: 'text' };

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
/** Split behaviours (as tokenizer.json spells them) the package splits as "Isolated" (its README). */
const UNSUPPORTED_SPLIT = new Set(['MergedWithPrevious', 'MergedWithNext', 'Contiguous']);

/** Reads `dir/tokenizer.json` (already parsed as `json`) through @huggingface/tokenizers. */
export function loadPackageTokenizer(dir: string, json: Json): Tokenizer {
  const file = path.join(dir, 'tokenizer.json');
  const fail = (message: string): never => {
    throw new UserError(`${file}: ${message}`);
  };
  const model = (json.model ?? {}) as Json;
  if (model.type !== 'BPE' && model.type !== 'Unigram') fail(`model.type ${JSON.stringify(model.type)}: only BPE and Unigram models are read`);
  if (model.type === 'Unigram' && model.byte_fallback === true) {
    fail('a Unigram model with byte_fallback is not read by @huggingface/tokenizers 0.2.0 (it gives <unk> where transformers gives byte tokens)');
  }
  for (const step of preTokenizerSteps(json.pre_tokenizer as Json | null)) {
    if (step.type === 'Split' && UNSUPPORTED_SPLIT.has(String(step.behavior))) {
      fail(`pre_tokenizer Split with behavior ${JSON.stringify(step.behavior)} is not read by @huggingface/tokenizers 0.2.0 (it would split as "Isolated")`);
    }
  }
  const config = readTokenizerConfig(dir, fail);
  let inner: PackageTokenizer;
  try {
    // the package reads post_processor etc. as keys that must exist; absent ones are null in tokenizers' own files
    inner = new PackageTokenizer({ normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...json }, config);
  } catch (error) {
    return fail(`@huggingface/tokenizers cannot read it: ${(error as Error).message}`);
  }
  const vocab = inner.get_vocab(true);
  let vocabSize = 0;
  for (const id of vocab.values()) vocabSize = Math.max(vocabSize, id + 1);
  if (vocabSize === 0) fail('model.vocab: empty');
  const eosId = endOfTextId(dir, (content) => vocab.get(content), fail);
  const bosId = promptBosId(json, config, (content) => vocab.get(content), fail);
  const kind = model.type === 'Unigram' ? 'unigram' : 'bpe';
  const tokenizer = new HfPackageTokenizer(inner, json, config, kind, vocabSize, eosId, pieceBytesOf(json.decoder as Json | null), model.byte_fallback === true);
  if (bosId !== undefined) tokenizer.bosId = bosId;
  return tokenizer;
}

function preTokenizerSteps(pre: Json | null): Json[] {
  if (!pre) return [];
  return pre.type === 'Sequence' ? (pre.pretokenizers as Json[]).flatMap((step) => preTokenizerSteps(step)) : [pre];
}

function pieceBytesOf(decoder: Json | null): PieceBytes {
  const steps: Json[] = [];
  const walk = (d: Json | null) => {
    if (!d) return;
    if (d.type === 'Sequence') (d.decoders as Json[]).forEach(walk);
    else steps.push(d);
  };
  walk(decoder);
  if (steps.some((d) => d.type === 'ByteLevel')) return { kind: 'byte-level' };
  for (const d of steps) {
    if (d.type === 'Metaspace') return { kind: 'metaspace', replacement: typeof d.replacement === 'string' ? d.replacement : '▁' };
    const pattern = (d.pattern ?? {}) as Json;
    if (d.type === 'Replace' && d.content === ' ' && typeof pattern.String === 'string') return { kind: 'metaspace', replacement: pattern.String };
  }
  return steps.some((d) => d.type === 'ByteFallback') ? { kind: 'metaspace', replacement: '▁' } : { kind: 'text' };
}

class HfPackageTokenizer implements Tokenizer {
  private readonly tokenBytesCache = new Map<number, Uint8Array>();
  private readonly addedContent = new Map<number, string>();
  bosId?: number;

  constructor(
    private readonly inner: PackageTokenizer,
    private readonly json: Json,
    private readonly config: Json,
    readonly kind: 'bpe' | 'unigram',
    readonly vocabSize: number,
    readonly eosId: number,
    private readonly pieceBytes: PieceBytes,
    private readonly byteFallback: boolean,
  ) {
    for (const [id, token] of inner.get_added_tokens_decoder()) this.addedContent.set(id, token.content);
  }

  encode(text: string): number[] {
    return text.length ? this.inner.encode(text, { add_special_tokens: false }).ids : [];
  }

  decode(ids: ArrayLike<number>): string {
    const list = Array.from(ids);
    for (const id of list) this.checkId(id);
    if (list.length === 0) return '';
    return this.inner.decode(list, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  tokenBytes(id: number): Uint8Array {
    const cached = this.tokenBytesCache.get(id);
    if (cached) return cached;
    this.checkId(id);
    const bytes = this.piece(id);
    this.tokenBytesCache.set(id, bytes);
    return bytes;
  }

  private piece(id: number): Uint8Array {
    const added = this.addedContent.get(id);
    if (added !== undefined) return new TextEncoder().encode(added);
    const text = this.inner.id_to_token(id)!;
    if (this.pieceBytes.kind === 'byte-level') {
      const bytes = vocabStringToBytes(text);
      if (bytes) return bytes;
    } else if (this.pieceBytes.kind === 'metaspace') {
      const byte = this.byteFallback ? BYTE_PIECE.exec(text) : null;
      if (byte) return Uint8Array.of(parseInt(byte[1], 16));
      return new TextEncoder().encode(text.replaceAll(this.pieceBytes.replacement, ' '));
    }
    return new TextEncoder().encode(this.inner.decode([id], { skip_special_tokens: false, clean_up_tokenization_spaces: false }));
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.inner.id_to_token(id) === undefined) {
      throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }

  toHfJson(): object {
    return this.json;
  }

  /** Writes the file as read (and tokenizer_config.json, with `model_max_length` when given). */
  save(dir: string, options: { modelMaxLength?: number } = {}): void {
    fs.mkdirSync(dir, { recursive: true });
    writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(this.json));
    const config = options.modelMaxLength === undefined ? this.config : { ...this.config, model_max_length: options.modelMaxLength };
    writeFileAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 1) + '\n');
  }
}
