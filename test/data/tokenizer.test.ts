import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BYTE_TO_CHAR, EOS_TOKEN, PRETOKENIZE } from '../../src/data/byte_level';
import { loadCorpusText } from '../../src/data/corpus';
import { buildTokenizer, loadTokenizer, type Tokenizer } from '../../src/data/tokenizer';

let dir: string;
let corpus: string;
let trainText: string;
let heldOut: string;
let bpe: Tokenizer;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-tok-'));
  corpus = loadCorpusText({ corpus: 'default', text_field: 'text' });
  trainText = corpus.slice(0, 300_000);
  heldOut = corpus.slice(3_000_000, 3_100_000) + EOS_TOKEN + 'Ünïcödé — “quotes”, emoji 🙂, tabs\t\tand  spaces\r\n';
  bpe = buildTokenizer({ type: 'bpe', vocab_size: 1024 }, trainText);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Pre-tokenized words of a text, as GPT-2 splits them. */
const words = (text: string) => Array.from(text.matchAll(PRETOKENIZE), (m) => m[0]);

/** Independent reference: apply every merge in rank order to the whole word (the order training used). */
function referenceEncodeWord(word: string, merges: [number, number, number][], byteIds: (b: number) => number): number[] {
  let symbols = Array.from(Buffer.from(word, 'utf8'), byteIds);
  for (const [left, right, result] of merges) {
    const next: number[] = [];
    for (let i = 0; i < symbols.length; i++) {
      if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
        next.push(result);
        i++;
      } else next.push(symbols[i]);
    }
    symbols = next;
  }
  return symbols;
}

/** Merges as ids, read back from the Hugging Face JSON (so this also checks the saved form). */
function mergesOf(tokenizer: Tokenizer): [number, number, number][] {
  const model = (tokenizer.toHfJson() as { model: { vocab: Record<string, number>; merges: string[] } }).model;
  return model.merges.map((m) => {
    const [a, b] = m.split(' ');
    return [model.vocab[a], model.vocab[b], model.vocab[a + b]];
  });
}

describe('GPT-2 byte-level pieces', () => {
  test('bytes_to_unicode matches GPT-2 (space → Ġ, newline → Ċ, byte 0 → Ā, printable ASCII unchanged)', () => {
    expect(BYTE_TO_CHAR[32]).toBe('Ġ');
    expect(BYTE_TO_CHAR[10]).toBe('Ċ');
    expect(BYTE_TO_CHAR[0]).toBe('Ā');
    expect(BYTE_TO_CHAR[127]).toBe('ġ'); // DEL: 0x100 + 33 (0..32 came first)
    expect(BYTE_TO_CHAR[0x41]).toBe('A');
    expect(BYTE_TO_CHAR[0xad]).toBe('Ń'); // soft hyphen, the last non-printable: 0x100 + 67
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
  });

  test('pre-tokenizer splits like GPT-2', () => {
    // A whitespace run leaves its last character to the next word: "  test" → " ", " test"; "\n\ny" → "\n", "\n", "y".
    expect(words("Hello world's  test 123!! x\n\ny")).toEqual(['Hello', ' world', "'s", ' ', ' test', ' 123', '!!', ' x', '\n', '\n', 'y']);
  });
});

describe('byte tokenizer', () => {
  const byte = buildTokenizer({ type: 'byte', vocab_size: 257 }, '');
  test('ids are the UTF-8 bytes, <|endoftext|> is 256, decoding is lossless', () => {
    expect(byte).toMatchObject({ kind: 'byte', vocabSize: 257, eosId: 256 });
    const text = 'a é 🙂' + EOS_TOKEN + 'b';
    expect(byte.encode(text)).toEqual([...Buffer.from('a é 🙂'), 256, 98]);
    expect(byte.decode(byte.encode(heldOut))).toBe(heldOut);
  });
  test('saved as a Hugging Face BPE with 0 merges and loaded back', () => {
    const where = path.join(dir, 'byte');
    byte.save(where, { modelMaxLength: 64 });
    const json = JSON.parse(fs.readFileSync(path.join(where, 'tokenizer.json'), 'utf8'));
    expect(json.model.type).toBe('BPE');
    expect(json.model.merges).toEqual([]);
    expect(json.model.vocab['Ġ']).toBe(32);
    expect(json.model.vocab[EOS_TOKEN]).toBe(256);
    expect(Object.keys(json.model.vocab)).toHaveLength(257);
    expect(json.added_tokens).toEqual([expect.objectContaining({ id: 256, content: EOS_TOKEN, special: true })]);
    expect(JSON.parse(fs.readFileSync(path.join(where, 'tokenizer_config.json'), 'utf8'))).toMatchObject({ eos_token: EOS_TOKEN, model_max_length: 64 });
    const loaded = loadTokenizer(where);
    expect(loaded).toMatchObject({ kind: 'byte', vocabSize: 257, eosId: 256 });
    expect(loaded.encode(heldOut)).toEqual(byte.encode(heldOut));
  });
});

describe('BPE tokenizer', () => {
  test('has the requested vocabulary: 256 bytes, merges, <|endoftext|> last', () => {
    expect(bpe).toMatchObject({ kind: 'bpe', vocabSize: 1024, eosId: 1023 });
    expect(Array.from(bpe.tokenBytes(65))).toEqual([65]);
  });

  test('the first merge is the most frequent byte pair within words (counted independently)', () => {
    const counts = new Map<string, number>();
    for (const word of words(trainText)) {
      const bytes = Buffer.from(word, 'utf8');
      for (let i = 0; i + 1 < bytes.length; i++) {
        const key = `${bytes[i]},${bytes[i + 1]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    const best = [...counts].sort((a, b) => b[1] - a[1])[0][0];
    const [left, right] = mergesOf(bpe)[0];
    expect(`${left},${right}`).toBe(best);
  });

  test('encoding equals the reference (all merges in rank order) on held-out words', () => {
    const merges = mergesOf(bpe);
    const sample = words(heldOut).slice(0, 3000);
    for (const word of sample) expect(bpe.encode(word)).toEqual(referenceEncodeWord(word, merges, (b) => b));
  });

  test('lossless on held-out text and compresses it (≥ 2.5 bytes per token on English)', () => {
    const ids = bpe.encode(heldOut);
    expect(bpe.decode(ids)).toBe(heldOut);
    expect(ids.filter((id) => id === bpe.eosId)).toHaveLength(1);
    expect(Buffer.byteLength(heldOut) / ids.length).toBeGreaterThan(2.5);
  });

  test('save + load gives the same ids; merges are GPT-2 style strings', () => {
    const where = path.join(dir, 'bpe');
    bpe.save(where);
    const json = JSON.parse(fs.readFileSync(path.join(where, 'tokenizer.json'), 'utf8'));
    expect(json.pre_tokenizer).toEqual({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
    expect(json.decoder.type).toBe('ByteLevel');
    expect(json.model.merges.length).toBe(1024 - 257);
    expect(json.model.merges.every((m: string) => m.split(' ').length === 2)).toBe(true);
    const loaded = loadTokenizer(where);
    expect(loaded).toMatchObject({ kind: 'bpe', vocabSize: 1024, eosId: 1023 });
    expect(loaded.encode(heldOut)).toEqual(bpe.encode(heldOut));
    expect(loaded.decode(bpe.encode(heldOut))).toBe(heldOut);
  });

  test('training 4096 merges on the whole 4 MB corpus takes well under a minute', () => {
    const start = Date.now();
    const big = buildTokenizer({ type: 'bpe', vocab_size: 4096 }, corpus);
    const seconds = (Date.now() - start) / 1000;
    expect(big.vocabSize).toBe(4096);
    expect(seconds).toBeLessThan(30);
  });
});

describe('loadTokenizer errors name the file and the problem', () => {
  const write = (name: string, json: unknown) => {
    const where = path.join(dir, name);
    fs.mkdirSync(where, { recursive: true });
    fs.writeFileSync(path.join(where, 'tokenizer.json'), typeof json === 'string' ? json : JSON.stringify(json));
    return where;
  };
  test('missing file', () => expect(() => loadTokenizer(path.join(dir, 'none'))).toThrow(/none\/tokenizer\.json: cannot read \(ENOENT\)/));
  test('not JSON', () => expect(() => loadTokenizer(write('nojson', '{'))).toThrow(/tokenizer\.json: invalid JSON/));
  test('not BPE', () => expect(() => loadTokenizer(write('wp', { model: { type: 'WordPiece' } }))).toThrow(/model\.type: expected "BPE", got "WordPiece"/));
  test('merge naming an unknown token', () => {
    const json = buildTokenizer({ type: 'byte', vocab_size: 257 }, '').toHfJson() as { model: { merges: string[] } };
    json.model.merges = ['a b'];
    expect(() => loadTokenizer(write('badmerge', json))).toThrow(/model\.merges\[0\]: "a b" names a token missing from the vocabulary/);
  });
});
