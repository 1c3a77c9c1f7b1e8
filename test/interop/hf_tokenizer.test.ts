/**
 * The byte-level BPE reader for Hugging Face tokenizer.json files beyond dsmoe's own (src/interop/hf_tokenizer.ts),
 * on a hand-built Qwen2-style file: Split regex with a (?i:…) group, then ByteLevel without its regex, added
 * special tokens, and the eos token named by tokenizer_config.json.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as PackageTokenizer } from '@huggingface/tokenizers';
import { BYTE_TO_CHAR } from '../../src/data/byte_level';
import { encodePrompt } from '../../src/data/tokenizer';
import { loadAnyTokenizer, loadHfTokenizer } from '../../src/interop/hf_tokenizer';
import { loadPackageTokenizer } from '../../src/interop/hf_package_tokenizer';
import { jsRegex } from '../../src/interop/hf_regex';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

// Qwen2's pre-tokenizer pattern, as its tokenizer.json writes it
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function qwenStyleFolder(): string {
  const dir = tempDir('tok');
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((char, byte) => (vocab[char] = byte));
  Object.assign(vocab, { 'Ġt': 256, he: 257, 'Ġthe': 258 });
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0',
    added_tokens: [special(259, '<|endoftext|>'), special(260, '<|im_start|>'), special(261, '<|im_end|>')],
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN2_PATTERN }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    decoder: { type: 'ByteLevel' },
    model: { type: 'BPE', dropout: null, unk_token: null, byte_fallback: false, vocab, merges: [['Ġ', 't'], ['h', 'e'], ['Ġt', 'he']] },
  };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'Qwen2Tokenizer', eos_token: '<|im_end|>' }));
  return dir;
}

describe('Hugging Face byte-level BPE tokenizers', () => {
  test('Qwen2-style: Split regex, merges by rank, added tokens, eos from tokenizer_config.json', () => {
    const dir = qwenStyleFolder();
    const tokenizer = loadAnyTokenizer(dir);
    expect(tokenizer.eosId).toBe(261);
    expect(tokenizer.vocabSize).toBe(262);
    expect(tokenizer.encode('the the<|im_end|>')).toEqual([116, 257, 258, 261]);
    const text = '<|im_start|>Tha\u0308t IT\'S 42 naïve\n\n  x<|endoftext|>';
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text.normalize('NFC'));
  });

  test('Qwen2-style: the same ids as @huggingface/tokenizers, an implementation independent of this reader', () => {
    const dir = qwenStyleFolder();
    const ours = loadHfTokenizer(dir);
    const theirs = loadPackageTokenizer(dir, JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')));
    const texts = ['the the<|im_end|>', '<|im_start|>Tha\u0308t IT\'S 42 naïve\n\n  x<|endoftext|>', "  the\tTHE's   the 2024 \u4e2d\u6587 😀\r\n"];
    for (const text of texts) expect(theirs.encode(text)).toEqual(ours.encode(text));
    expect(theirs.eosId).toBe(ours.eosId);
    expect(theirs.vocabSize).toBe(ours.vocabSize);
  });

  test('BOS: Qwen2- and GPT-2-style files add none; a Llama 3-style post_processor adds its <|begin_of_text|>', () => {
    const dir = qwenStyleFolder();
    expect(loadHfTokenizer(dir).bosId).toBeUndefined();
    expect(encodePrompt(loadAnyTokenizer(dir), ' the')).toEqual([258]);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    json.post_processor = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true }; // GPT-2's
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
    expect(loadHfTokenizer(dir).bosId).toBeUndefined();
    // Llama 3 ships PreTrainedTokenizerFast with Sequence[ByteLevel, TemplateProcessing(<|begin_of_text|> $A)]
    json.post_processor = {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<|im_start|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [],
          special_tokens: { '<|im_start|>': { id: '<|im_start|>', ids: [260], tokens: ['<|im_start|>'] } },
        },
      ],
    };
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
    const ours = loadHfTokenizer(dir);
    expect(ours.bosId).toBe(260);
    expect(encodePrompt(ours, ' the')).toEqual([260, 258]);
    // the package applies the post_processor itself: the same ids
    const theirs = new PackageTokenizer(json, {});
    expect(theirs.encode(' the', { add_special_tokens: true }).ids).toEqual([260, 258]);
  });

  test("(?i:…) groups become character classes Node's RegExp accepts", () => {
    const regex = jsRegex(QWEN2_PATTERN);
    expect(Array.from("IT'S it's".matchAll(regex), (m) => m[0])).toEqual(['IT', "'S", ' it', "'s"]);
  });

  test('SentencePiece-style BPE (Mixtral, Llama 2) is not byte-level: this reader refuses it, naming the package that reads it', () => {
    const dir = tempDir('tok-sp');
    fs.writeFileSync(
      path.join(dir, 'tokenizer.json'),
      JSON.stringify({ pre_tokenizer: { type: 'Metaspace', replacement: '▁' }, model: { type: 'BPE', byte_fallback: true, vocab: { '<unk>': 0 }, merges: [] } }),
    );
    expect(() => loadHfTokenizer(dir)).toThrow(/byte_fallback.*@huggingface\/tokenizers/);
    // loadAnyTokenizer hands it to the package (test/interop/hf_package_tokenizer.test.ts); this one has no
    // end-of-text token, so the one-line error gives the package path's reason and this reader's
    expect(() => loadAnyTokenizer(dir)).toThrow(/tokenizer\.json: no end-of-text token .*\(dsmoe's byte-level reader: a SentencePiece-style BPE/);
  });
});
