/**
 * The pieces of GPT-2's byte-level BPE that must match Hugging Face tokenizers exactly: the byte ↔ printable
 * character table used for vocabulary strings, the pre-tokenization regex (ByteLevel pre-tokenizer, use_regex),
 * and the end-of-text token.
 */

export const EOS_TOKEN = '<|endoftext|>';

/**
 * GPT-2's pre-tokenizer: contractions, optional space + letters, optional space + digits, optional space +
 * other symbols, whitespace runs (the last space of a run joins the next word).
 */
export const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards, in byte order. */
function buildByteToChar(): string[] {
  const chars: string[] = new Array(256);
  let next = 256;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
    chars[byte] = String.fromCharCode(printable ? byte : next++);
  }
  return chars;
}

export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((char, byte) => [char, byte]));

/** The vocabulary string of a token's bytes. */
export function bytesToVocabString(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += BYTE_TO_CHAR[byte];
  return text;
}

/** The bytes of a vocabulary string, or undefined if it holds a character outside the byte table. */
export function vocabStringToBytes(text: string): Uint8Array | undefined {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const byte = CHAR_TO_BYTE.get(text[i]);
    if (byte === undefined) return undefined;
    bytes[i] = byte;
  }
  return bytes;
}

/** Splits text at each end-of-text token: [part, part, ...], with an EOS between consecutive parts. */
export function splitOnEos(text: string): string[] {
  return text.split(EOS_TOKEN);
}
