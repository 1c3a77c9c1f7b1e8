/**
 * Log-probabilities for the OpenAI `logprobs` fields: the model's own distribution (log-softmax of the raw logits,
 * before temperature or top_p, as vLLM reports them by default), for the token that was chosen and the `top` most
 * likely ones.
 */
import type { ServeTokenizer } from './batch_evaluator';

const LOGPROB_FLOOR = -9999;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export interface TokenChoice {
  id: number;
  logprob: number;
}

/** One position: the token that came next and the most likely candidates there (best first, ties to the lower id). */
export interface TokenLogprob extends TokenChoice {
  top: TokenChoice[];
}

/**
 * log p(token) under softmax(row) [V], in f64, and the `top` largest entries among ids below `candidates` (the
 * tokenizer's vocabulary: padded rows of a larger model vocabulary are no text to show, though they count in the
 * normaliser).
 */
export function tokenLogprob(row: Float32Array, token: number, top: number, candidates: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const logZ = max + Math.log(sum);
  const best: number[] = []; // ids, best first
  const limit = Math.min(candidates, row.length);
  for (let i = 0; top > 0 && i < limit; i++) {
    if (best.length === top && row[i] <= row[best[top - 1]]) continue;
    let at = best.length;
    while (at > 0 && row[best[at - 1]] < row[i]) at--; // strictly smaller: an equal earlier id stays ahead
    best.splice(at, 0, i);
    if (best.length > top) best.pop();
  }
  // A masked token (logit −Infinity) has no finite log-probability; JSON has no −Infinity, so it is floored as vLLM does.
  const logprob = (id: number) => Math.max(row[id] - logZ, LOGPROB_FLOOR);
  return { id: token, logprob: logprob(token), top: best.map((id) => ({ id, logprob: logprob(id) })) };
}

/**
 * How a token is shown in `tokens` / `top_logprobs`: its text when its bytes are whole UTF-8, else OpenAI's
 * `bytes:\xNN…` form (a token that ends inside a character has no text of its own).
 */
export function tokenText(tokenizer: ServeTokenizer, id: number): string {
  const bytes = tokenizer.tokenBytes(id);
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return 'bytes:' + [...bytes].map((b) => '\\x' + b.toString(16).padStart(2, '0')).join('');
  }
}

/** The legacy completions shape: parallel arrays over tokens, text offsets counted from `startOffset`. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/**
 * Completions `logprobs` for a run of positions. A `null` logprob is the first prompt token under `echo`, which
 * nothing predicts. `text_offset` of a token is where its text starts: `startOffset` plus the length of what the
 * tokens before it in this run (after `before`, the ids already reported) decode to, by `decode`: the tokenizer's
 * own for a prompt, `continuationText` for generated tokens (which keep the space of a leading "▁").
 */
export function completionLogprobs(
  tokenizer: ServeTokenizer,
  entries: (TokenLogprob | { id: number; logprob: null })[],
  startOffset: number,
  before: number[] = [],
  decode: (ids: number[]) => string = (ids) => tokenizer.decode(ids),
): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  const ids = [...before];
  const baseLength = decode(before).length;
  for (const entry of entries) {
    const text = tokenText(tokenizer, entry.id);
    out.tokens.push(text);
    out.token_logprobs.push(entry.logprob);
    if (entry.logprob === null) out.top_logprobs.push(null);
    else {
      const top: Record<string, number> = {};
      for (const choice of (entry as TokenLogprob).top) {
        const name = tokenText(tokenizer, choice.id);
        if (!(name in top)) top[name] = choice.logprob;
      }
      // The chosen token is always listed (as OpenAI and vLLM do), besides the best `top` others.
      if (!(text in top)) top[text] = entry.logprob;
      out.top_logprobs.push(top);
    }
    out.text_offset.push(startOffset + decode(ids).length - baseLength);
    ids.push(entry.id);
  }
  return out;
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** Chat `logprobs.content`: one entry per generated token, with its bytes and top alternatives. */
export function chatLogprobs(tokenizer: ServeTokenizer, entries: TokenLogprob[]): ChatTokenLogprob[] {
  const describe = (choice: TokenChoice) => ({
    token: tokenText(tokenizer, choice.id),
    logprob: choice.logprob,
    bytes: [...tokenizer.tokenBytes(choice.id)],
  });
  return entries.map((entry) => ({ ...describe(entry), top_logprobs: entry.top.map(describe) }));
}
