import { CompletionText } from '../../src/serve/completion_text';
import { TokenSampler, argMax } from '../../src/serve/token_sampler';
import { SeededRandom } from '../../src/serve/seeded_random';
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

  test('the earliest of several stop strings wins', () => {
    const text = new CompletionText(tokenizer, ['cd', 'b']);
    let stopped = false;
    for (const b of bytes('abcd')) if (text.push(b).stopped) stopped = true;
    expect(stopped).toBe(true);
    expect(text.fullText).toBe('a');
  });
});

describe('TokenSampler', () => {
  const logits = Float32Array.from([0.1, 2, 1.9, -1, 2]);
  test('temperature 0 is the arg-max with ties to the lower id', () => {
    expect(argMax(logits)).toBe(1);
    expect(new TokenSampler({ temperature: 0, topP: 1, seed: 1 }).sample(logits)).toBe(1);
  });

  test('the same seed gives the same draws; top-p keeps only the nucleus', () => {
    const draw = (seed: number, topP: number) => {
      const sampler = new TokenSampler({ temperature: 1, topP, seed });
      return Array.from({ length: 200 }, () => sampler.sample(logits));
    };
    expect(draw(5, 1)).toEqual(draw(5, 1));
    expect(draw(5, 1)).not.toEqual(draw(6, 1));
    expect(new Set(draw(5, 1)).size).toBe(5);
    // p ≈ [.04, .30, .27, .01, .30]: the two 2.0 logits and 1.9 make the 0.8 nucleus.
    expect([...new Set(draw(5, 0.8))].sort()).toEqual([1, 2, 4]);
    expect(new Set(draw(5, 0.01))).toEqual(new Set([1]));
  });

  test('frequencies follow the softmax', () => {
    const sampler = new TokenSampler({ temperature: 0.5, topP: 1, seed: 9 });
    const two = Float32Array.from([0, Math.log(3) * 0.5]); // p = [1/4, 3/4] at T = 0.5
    let ones = 0;
    for (let i = 0; i < 20000; i++) ones += sampler.sample(two);
    expect(ones / 20000).toBeCloseTo(0.75, 1);
  });

  test('SeededRandom is uniform on [0, 1) and seeds in and beyond 32 bits differ', () => {
    const r = new SeededRandom(-3);
    const xs = Array.from({ length: 10000 }, () => r.next());
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(xs.reduce((a, b) => a + b) / xs.length).toBeCloseTo(0.5, 1);
    expect(new SeededRandom(1).next()).not.toBe(new SeededRandom(1 + 2 ** 32).next());
  });
});

test('percentile interpolates between order statistics', () => {
  expect(percentile([3, 1, 2, 4], 0.5)).toBe(2.5);
  expect(percentile([5], 0.95)).toBe(5);
  expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], 0.95)).toBe(20);
  expect(Number.isNaN(percentile([], 0.5))).toBe(true);
});
