/**
 * A byte-level tokenizer in Hugging Face `tokenizers` format (byte-level BPE with no merges: one token per byte,
 * plus `<|endoftext|>`), for plans that have no trained tokenizer of their own (random-init speed benchmarks).
 */
import * as fs from 'fs';
import * as path from 'path';

export const BYTE_TOKENIZER_EOS = '<|endoftext|>';

/** GPT-2's byte → printable character table, which byte-level BPE vocabularies are written in. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(printable.includes(b) ? b : 256 + extra++);
  }
  return table;
}

export function byteTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((ch, b) => (vocab[ch] = b));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 256, content: BYTE_TOKENIZER_EOS, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

/** Writes tokenizer.json and tokenizer_config.json for the byte tokenizer into `dir`. */
export function writeByteTokenizer(dir: string, modelMaxLength: number): void {
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(byteTokenizerJson()) + '\n');
  const config = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    eos_token: BYTE_TOKENIZER_EOS,
    bos_token: null,
    unk_token: null,
    pad_token: BYTE_TOKENIZER_EOS,
    model_max_length: modelMaxLength,
    add_prefix_space: false,
  };
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
}
