/**
 * SentencePiece-style and Unigram tokenizer.json files (src/interop/hf_package_tokenizer.ts, through
 * @huggingface/tokenizers) against sentencepiece's own ids: test/fixtures/tokenizers/generate.py trains the models
 * with Debian's python3-sentencepiece, writes the tokenizer.json files as transformers' converters do, and stores
 * `sp.encode(text)` / `sp.decode(ids)` for every fixture text in reference.json. A published Mistral 7B tokenizer.json
 * (the one Mixtral uses) against ids published for it. Byte-level BPE: dsmoe's own readers against the package, an
 * implementation independent of theirs.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as PackageTokenizer } from '@huggingface/tokenizers';
import { buildTokenizer, encodePrompt, loadTokenizer, type Tokenizer } from '../../src/data/tokenizer';
import { loadAnyTokenizer, loadHfTokenizer } from '../../src/interop/hf_tokenizer';
import { loadPackageTokenizer } from '../../src/interop/hf_package_tokenizer';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'tokenizers');
interface Row {
  text: string;
  ids: number[];
  decoded: string | null;
}
const reference = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'reference.json'), 'utf8')) as Record<string, Row[]>;
const FOLDERS = ['llama_bpe_legacy', 'llama_bpe_metaspace', 'unigram'];
const joinedBytes = (tokenizer: Tokenizer, ids: number[]) => Buffer.concat(ids.map((id) => tokenizer.tokenBytes(id))).toString('utf8');

function copyFixture(name: string, edit: (json: Record<string, any>) => void): string {
  const dir = tempDir(`tok-${name}`);
  const json = JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'tokenizer.json'), 'utf8'));
  edit(json);
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  fs.copyFileSync(path.join(FIXTURES, name, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  return dir;
}

describe.each(FOLDERS)('%s: ids equal sentencepiece', (name) => {
  const tokenizer = loadAnyTokenizer(path.join(FIXTURES, name));
  const rows = reference[name];

  test('the reference covers spaces, newlines, accents, CJK, emoji and digits', () => {
    expect(rows.length).toBeGreaterThanOrEqual(20);
    const all = rows.map((r) => r.text).join('');
    for (const needle of ['   ', '\n', 'é', '中', '😀', '1234']) expect(all).toContain(needle);
  });

  test.each(reference[name].map((row) => [JSON.stringify(row.text), row] as const))('encode %s', (_label, row) => {
    expect(tokenizer.encode(row.text)).toEqual(row.ids);
    if (row.decoded !== null) expect(tokenizer.decode(row.ids)).toBe(row.decoded);
    else expect(tokenizer.decode(row.ids)).toContain('<unk>'); // sentencepiece writes " ⁇ ", transformers the token
  });

  test('vocabulary size, end-of-text and kind', () => {
    expect(tokenizer.vocabSize).toBe(1500);
    expect(tokenizer.eosId).toBe(2); // </s>, named by tokenizer_config.json
    expect(tokenizer.kind).toBe(name === 'unigram' ? 'unigram' : 'bpe');
  });
});

describe('Llama-style BPE with byte fallback (legacy tokenizer.json, as Llama 2 / Mistral / Mixtral ship)', () => {
  const dir = path.join(FIXTURES, 'llama_bpe_legacy');
  const tokenizer = loadAnyTokenizer(dir);
  const texts = reference.llama_bpe_legacy.map((row) => row.text);

  test('decode(encode(text)) is the text: byte-fallback <0x..> tokens, "▁" and the leading-space rule', () => {
    for (const text of texts) expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    const emoji = tokenizer.encode('🚀');
    expect(emoji.length).toBe(1 + 4); // "▁" and the four UTF-8 bytes of the emoji as <0x..> tokens
  });

  test('tokenBytes: "▁" is a space, <0xNN> the byte, so joined tokens are the text after the dummy-prefix space', () => {
    for (const text of texts.filter((t) => t.length)) expect(joinedBytes(tokenizer, tokenizer.encode(text))).toBe(' ' + text);
    expect([...tokenizer.tokenBytes(tokenizer.encode('\n')[1])]).toEqual([0x0a]);
    expect(Buffer.from(tokenizer.tokenBytes(tokenizer.eosId)).toString()).toBe('</s>');
  });

  test('special tokens written in the text are matched; no BOS is added', () => {
    // legacy files normalize each piece between special tokens on its own (the Prepend normalizer adds "▁" again)
    expect(tokenizer.encode('In the</s>beginning')).toEqual([...tokenizer.encode('In the'), 2, ...tokenizer.encode('beginning')]);
    expect(tokenizer.encode('Hello world')[0]).not.toBe(1);
  });

  test('ids outside the vocabulary are an error, not a silent <unk>', () => {
    expect(() => tokenizer.decode([1500])).toThrow(/outside the vocabulary \(0\.\.1499\)/);
    expect(() => tokenizer.tokenBytes(-1)).toThrow(/outside the vocabulary/);
    expect(tokenizer.decode([])).toBe('');
    expect(tokenizer.encode('')).toEqual([]);
  });

  test('the byte-level reader still refuses it; save writes both files and reads back the same', () => {
    expect(() => loadHfTokenizer(dir)).toThrow(/byte_fallback/);
    const out = tempDir('tok-saved');
    tokenizer.save(out, { modelMaxLength: 256 });
    const config = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8'));
    expect(config).toMatchObject({ eos_token: '</s>', model_max_length: 256 });
    const again = loadAnyTokenizer(out);
    for (const text of texts) expect(again.encode(text)).toEqual(tokenizer.encode(text));
  });
});

describe("a published Mistral 7B tokenizer.json (Mixtral's) against published ids", () => {
  // test/fixtures/tokenizers/mistral_7b/published_ids.json says where the file and the ids come from
  const dir = path.join(FIXTURES, 'mistral_7b');
  const published = JSON.parse(fs.readFileSync(path.join(dir, 'published_ids.json'), 'utf8')) as { cases: { text: string; ids: number[] }[] };

  test.each(published.cases.map((c) => [JSON.stringify(c.text).slice(0, 40), c] as const))('encode %s', (_label, c) => {
    const tokenizer = mistral();
    expect(c.ids[0]).toBe(1); // the published ids start with BOS, which encode (add_special_tokens=False) leaves out
    expect(tokenizer.encode(c.text)).toEqual(c.ids.slice(1));
    expect(encodePrompt(tokenizer, c.text)).toEqual(c.ids); // the prompt path: transformers' tokenizer(text), BOS included
    expect(tokenizer.decode(c.ids.slice(1))).toBe(c.text);
    expect(joinedBytes(tokenizer, c.ids.slice(1))).toBe(' ' + c.text);
  });

  test('32000 ids, </s> = 2, not readable by the byte-level reader', () => {
    expect(mistral()).toMatchObject({ vocabSize: 32000, eosId: 2, bosId: 1, kind: 'bpe' });
    expect(() => loadHfTokenizer(dir)).toThrow(/byte_fallback/);
  });

  let loaded: Tokenizer | undefined;
  function mistral(): Tokenizer {
    return (loaded ??= loadAnyTokenizer(dir));
  }
});

describe('BOS before prompts, as transformers decides it', () => {
  const texts = reference.llama_bpe_legacy.map((row) => row.text);
  const withConfig = (name: string, config: Record<string, unknown>, edit: (json: Record<string, any>) => void = () => {}) => {
    const dir = copyFixture(name, edit);
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    return loadAnyTokenizer(dir);
  };

  test.each(['llama_bpe_legacy', 'llama_bpe_metaspace'])('%s: <s> first, the ids the package gives with add_special_tokens=True', (name) => {
    const dir = path.join(FIXTURES, name);
    const tokenizer = loadAnyTokenizer(dir);
    expect(tokenizer.bosId).toBe(1);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const theirs = new PackageTokenizer(json, JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));
    for (const text of texts) expect(encodePrompt(tokenizer, text)).toEqual(theirs.encode(text, { add_special_tokens: true }).ids);
    expect(encodePrompt(tokenizer, '')).toEqual([1]); // as tokenizer("") gives for Llama
  });

  test("Llama-family classes follow tokenizer_config.json's add_bos_token, whatever the file's post_processor says", () => {
    const llama = { tokenizer_class: 'LlamaTokenizerFast', bos_token: '<s>', eos_token: '</s>' };
    expect(withConfig('llama_bpe_legacy', { ...llama, add_bos_token: false }).bosId).toBeUndefined();
    // older Llama files have no post_processor: LlamaTokenizerFast's default add_bos_token=True still adds <s>
    expect(withConfig('llama_bpe_legacy', llama, (json) => (json.post_processor = null)).bosId).toBe(1);
    expect(withConfig('llama_bpe_legacy', { ...llama, bos_token: { content: '</s>' } }).bosId).toBe(2);
    expect(() => withConfig('llama_bpe_legacy', { ...llama, bos_token: '<bos>' })).toThrow(/bos_token "<bos>".*not in the vocabulary/);
  });

  test('other classes: the post_processor alone (TemplateProcessing, inside a Sequence, RobertaProcessing; none without one)', () => {
    const generic = { tokenizer_class: 'PreTrainedTokenizerFast', eos_token: '</s>' };
    expect(withConfig('llama_bpe_legacy', generic).bosId).toBe(1);
    expect(withConfig('llama_bpe_legacy', { ...generic, add_bos_token: false }).bosId).toBe(1); // only Llama's class reads it
    expect(withConfig('llama_bpe_legacy', generic, (json) => (json.post_processor = null)).bosId).toBeUndefined();
    expect(withConfig('llama_bpe_legacy', generic, (json) => (json.post_processor = { type: 'Sequence', processors: [{ type: 'ByteLevel' }, json.post_processor] })).bosId).toBe(1);
    expect(withConfig('llama_bpe_legacy', generic, (json) => (json.post_processor = { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 1] })).bosId).toBe(1);
    // T5's template appends </s> after the text: nothing goes first, and an appended token is not taken for prompts
    const t5 = withConfig('unigram', { tokenizer_class: 'T5Tokenizer', eos_token: '</s>' }, (json) => {
      json.post_processor = {
        type: 'TemplateProcessing',
        single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
        pair: [],
        special_tokens: { '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } },
      };
    });
    expect(t5.bosId).toBeUndefined();
    expect(encodePrompt(t5, 'In the beginning')).toEqual(t5.encode('In the beginning'));
    expect(loadAnyTokenizer(path.join(FIXTURES, 'unigram')).bosId).toBeUndefined();
  });

  test('a template whose first special token has several ids is refused, naming it', () => {
    expect(() =>
      withConfig('llama_bpe_legacy', { tokenizer_class: 'PreTrainedTokenizerFast', eos_token: '</s>' }, (json) => (json.post_processor.special_tokens['<s>'].ids = [1, 1])),
    ).toThrow(/tokenizer\.json: post_processor: the special token "<s>" before \$A must have exactly one id/);
  });

  test("dsmoe's own tokenizers add none: prompts are the text's ids", () => {
    const dir = tempDir('tok-own-bos');
    buildTokenizer({ type: 'bpe', vocab_size: 300 }, texts.join('\n')).save(dir);
    const own = loadAnyTokenizer(dir);
    expect(own.bosId).toBeUndefined();
    for (const text of texts) expect(encodePrompt(own, text)).toEqual(own.encode(text));
  });
});

describe('end-of-text', () => {
  test('without an eos_token in tokenizer_config.json nor added tokens, </s> is found in the vocabulary', () => {
    const dir = copyFixture('unigram', (json) => (json.added_tokens = []));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '{}');
    const vocab = (JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')).model.vocab as [string, number][]).map(([p]) => p);
    expect(vocab).toContain('</s>'); // the piece is there, so the fallback names find it
    expect(loadAnyTokenizer(dir).eosId).toBe(2);
  });
});

describe('files the package would read differently from transformers are refused', () => {
  test('Unigram with byte_fallback (the package has no byte fallback for Unigram)', () => {
    const dir = copyFixture('unigram', (json) => (json.model.byte_fallback = true));
    expect(() => loadAnyTokenizer(dir)).toThrow(/tokenizer\.json: a Unigram model with byte_fallback is not read/);
  });

  test('models other than BPE and Unigram (WordPiece: encoders, not language models)', () => {
    const dir = copyFixture('unigram', (json) => (json.model = { type: 'WordPiece', unk_token: '<unk>', vocab: { '<unk>': 0, '</s>': 1 } }));
    expect(() => loadAnyTokenizer(dir)).toThrow(/model\.type "WordPiece": only BPE and Unigram models are read/);
  });

  test('a Split pre-tokenizer with behavior MergedWithPrevious (Gemma-style)', () => {
    const dir = copyFixture('llama_bpe_legacy', (json) => {
      json.pre_tokenizer = { type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithPrevious', invert: false };
    });
    expect(() => loadAnyTokenizer(dir)).toThrow(/Split with behavior "MergedWithPrevious"/);
  });
});

describe('byte-level BPE: dsmoe readers against @huggingface/tokenizers', () => {
  const texts = [...reference.llama_bpe_legacy.map((row) => row.text), "IT'S it's 42 naïve\r\n  x<|endoftext|>y"];

  test("dsmoe's own trained BPE tokenizes as the package does", () => {
    const corpus = fs.readFileSync(path.join(FIXTURES, 'generate.py'), 'utf8');
    const dir = tempDir('tok-own');
    buildTokenizer({ type: 'bpe', vocab_size: 600 }, corpus).save(dir);
    const own = loadTokenizer(dir);
    const other = loadPackageTokenizer(dir, JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')));
    for (const text of texts) {
      expect(own.encode(text)).toEqual(other.encode(text));
      const ids = own.encode(text);
      expect(other.decode(ids)).toBe(own.decode(ids));
      for (const id of ids) expect([...other.tokenBytes(id)]).toEqual([...own.tokenBytes(id)]);
    }
    expect(other.eosId).toBe(own.eosId);
    expect(other.vocabSize).toBe(own.vocabSize);
  });
});
