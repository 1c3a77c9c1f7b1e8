import { chatLogprobs, completionLogprobs, tokenLogprob, tokenText } from '../../src/serve/token_logprobs';
import { createFakeServeModel } from '../../src/serve/fake_model';

const { tokenizer } = createFakeServeModel();

/** Naive reference: log of softmax computed in f64 with an explicit sum (no max shift). */
function naiveLogSoftmax(row: number[]): number[] {
  const total = row.reduce((sum, l) => sum + Math.exp(l), 0);
  return row.map((l) => Math.log(Math.exp(l) / total));
}

describe('tokenLogprob', () => {
  test('matches a naive log-softmax, and the top list is the k largest, ties to the lower id', () => {
    const row = Float32Array.from([0.5, 2, -1, 2, 1.25, 0, 2, -3]);
    const reference = naiveLogSoftmax([...row]);
    const result = tokenLogprob(row, 4, 3, row.length);
    expect(result.id).toBe(4);
    expect(result.logprob).toBeCloseTo(reference[4], 12);
    expect(result.top.map((t) => t.id)).toEqual([1, 3, 6]);
    for (const t of result.top) expect(t.logprob).toBeCloseTo(reference[t.id], 12);
    expect(tokenLogprob(row, 0, 5, row.length).top.map((t) => t.id)).toEqual([1, 3, 6, 4, 0]);
    expect(tokenLogprob(row, 0, 0, row.length).top).toEqual([]);
  });

  test('large logits do not overflow; masked tokens get the -9999 floor; candidates beyond the tokenizer are not listed', () => {
    const row = Float32Array.from([1000, 999, -Infinity, 1001]);
    const result = tokenLogprob(row, 2, 4, 3);
    expect(result.logprob).toBe(-9999);
    expect(result.top.map((t) => t.id)).toEqual([0, 1, 2]); // id 3 is past the tokenizer's 3 tokens
    const shifted = naiveLogSoftmax([0, -1, -Infinity, 1]);
    expect(result.top[0].logprob).toBeCloseTo(shifted[0], 9);
  });
});

describe('token text', () => {
  test('whole UTF-8 is text; a byte inside a character is shown as bytes:\\xNN', () => {
    expect(tokenText(tokenizer, 65)).toBe('A');
    expect(tokenText(tokenizer, 0xc3)).toBe('bytes:\\xc3');
    expect(tokenText(tokenizer, 256)).toBe('<|endoftext|>');
  });

  test('completions arrays: offsets count the decoded text, a split character included', () => {
    const ids = [...Buffer.from('aé b', 'utf8')]; // a, 0xc3, 0xa9, ' ', b
    const entries = ids.map((id) => ({ id, logprob: -1, top: [{ id, logprob: -1 }] }));
    const out = completionLogprobs(tokenizer, entries, 10);
    expect(out.tokens).toEqual(['a', 'bytes:\\xc3', 'bytes:\\xa9', ' ', 'b']);
    expect(out.text_offset).toEqual([10, 11, 12, 12, 13]);
    expect(out.top_logprobs[0]).toEqual({ a: -1 });
    // Reported in two pieces, the second knowing the first's ids: the same offsets.
    const first = completionLogprobs(tokenizer, entries.slice(0, 2), 10);
    const second = completionLogprobs(tokenizer, entries.slice(2), 12, ids.slice(0, 2));
    expect([...first.text_offset, ...second.text_offset]).toEqual(out.text_offset);
    const echo = completionLogprobs(tokenizer, [{ id: 72, logprob: null }, ...entries.slice(0, 1)], 0);
    expect(echo.token_logprobs).toEqual([null, -1]);
    expect(echo.top_logprobs[0]).toBeNull();
  });

  test('chat entries carry bytes and their alternatives', () => {
    const out = chatLogprobs(tokenizer, [{ id: 0xc3, logprob: -0.5, top: [{ id: 66, logprob: -0.25 }] }]);
    expect(out).toEqual([{ token: 'bytes:\\xc3', logprob: -0.5, bytes: [0xc3], top_logprobs: [{ token: 'B', logprob: -0.25, bytes: [66] }] }]);
  });
});
