import * as path from 'path';
import { CompletionText, continuationText } from '../../src/serve/completion_text';
import { loadAnyTokenizer } from '../../src/interop/hf_tokenizer';
import { sampleToken } from '../../src/sampling';
import { createFakeServeModel } from '../../src/serve/fake_model';
import { percentile } from '../../src/serve/percentile';

const { tokenizer } = createFakeServeModel();
const bytes = (s: string) => [...Buffer.from(s, 'utf8')];

describe('CompletionText', () => {
  test('holds back a possible stop-string prefix, then cuts at the stop string', () => {
    const text = new CompletionText(tokenizer, ['END']);
    const deltas = bytes('abcEN').map((b) => text.push(b).delta);
    expect(deltas.join('')).toBe('abc'); // "EN" may still become "END"
    const stop = text.push(bytes('D')[0]);
    expect(stop).toEqual({ delta: '', stopped: true });
    expect(text.fullText).toBe('abc');
  });

  test('a prefix that does not complete is released', () => {
    const text = new CompletionText(tokenizer, ['END']);
    const out = bytes('xENx').map((b) => text.push(b).delta).join('') + text.finish().delta;
    expect(out).toBe('xENx');
  });

  test('multi-byte characters are emitted whole, and the concatenation equals the full decode', () => {
    const sample = 'añ€𝄞z';
    const text = new CompletionText(tokenizer, []);
    const deltas = bytes(sample).map((b) => text.push(b).delta);
    for (const d of deltas) expect(d).not.toContain('\uFFFD');
    expect(deltas.join('') + text.finish().delta).toBe(sample);
  });

  test('SentencePiece-style tokens keep the space of "▁" and join <0x..> bytes into characters', () => {
    // decode() drops the space of a leading "▁" (start of text); generated text continues a prompt and keeps it
    const llama = loadAnyTokenizer(path.join(__dirname, '..', 'fixtures', 'tokenizers', 'llama_bpe_legacy'));
    const sample = 'Hello world, 🚀 naïve  end';
    const ids = llama.encode(sample);
    expect(llama.decode(ids)).toBe(sample);
    const text = new CompletionText(llama, []);
    const deltas = ids.map((id) => text.push(id).delta);
    for (const d of deltas) expect(d).not.toContain('\uFFFD');
    expect(deltas.join('') + text.finish().delta).toBe(' ' + sample);
    expect(continuationText(llama, ids)).toBe(' ' + sample);
  });

  test('the earliest of several stop strings wins', () => {
    const text = new CompletionText(tokenizer, ['cd', 'b']);
    let stopped = false;
    for (const b of bytes('abcd')) if (text.push(b).stopped) stopped = true;
    expect(stopped).toBe(true);
    expect(text.fullText).toBe('a');
  });
});

describe('request samplers', () => {
  // The sampler contract itself is tested in test/sampling; here: each request's sampler is its own (seed, counter)
  // stream, so its tokens do not depend on other requests sampled in between.
  test('the fake model samples by the shared contract, one counter per request', () => {
    const model = createFakeServeModel();
    const logits = Float32Array.from([0.1, 2, 1.9, -1, 2]);
    const options = { temperature: 1, topP: 0.9, seed: 42 };
    const alone = model.createSampler(options);
    const expected = Array.from({ length: 50 }, (_, counter) => sampleToken(logits, options, options.seed, counter));
    expect(Array.from({ length: 50 }, () => alone.sample(logits))).toEqual(expected);
    const a = model.createSampler(options);
    const b = model.createSampler({ ...options, seed: 7 });
    const interleaved: number[] = [];
    for (let i = 0; i < 50; i++) {
      b.sample(logits);
      interleaved.push(a.sample(logits));
      b.sample(logits);
    }
    expect(interleaved).toEqual(expected);
  });
});

test('percentile interpolates between order statistics', () => {
  expect(percentile([3, 1, 2, 4], 0.5)).toBe(2.5);
  expect(percentile([5], 0.95)).toBe(5);
  expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], 0.95)).toBe(20);
  expect(Number.isNaN(percentile([], 0.5))).toBe(true);
});
