import { ApiError } from './api_error';
import {
  MAX_TOP_LOGPROBS,
  booleanField,
  integerInRange,
  numberField,
  parseBody,
  parseSamplingFields,
  present,
  type SamplingFields,
} from './request_fields';

/** One prompt: text to tokenize, or token ids as given. */
export type Prompt = { text: string } | { tokens: number[] };

/** A validated `POST /v1/completions` body. */
export interface CompletionRequest extends SamplingFields {
  /** One or more prompts; each gets `n` choices (choice index = prompt index · n + i). */
  prompts: Prompt[];
  maxTokens: number;
  /** Alternatives per position in `logprobs`; null: no log-probabilities. */
  logprobs: number | null;
  /** Return the prompt before the completion (and its log-probabilities with `logprobs`). */
  echo: boolean;
}

const DEFAULT_MAX_TOKENS = 16;

const AT_DEFAULT: Record<string, (value: unknown) => boolean> = {
  best_of: (v) => v === 1 || v === null,
  suffix: (v) => v === null || v === '',
};

/** Parses and validates a completions body; throws ApiError(400) naming the offending field. */
export function parseCompletionRequest(body: string, limits: { maxContext: number }): CompletionRequest {
  const fields = parseBody(body, ['prompt', 'max_tokens', 'logprobs', 'echo'], AT_DEFAULT);
  const sampling = parseSamplingFields(fields);
  const prompts = present(fields, 'prompt') ? parsePrompts(fields.prompt) : [{ text: '' }];
  const echo = present(fields, 'echo') ? booleanField(fields, 'echo') : false;
  const logprobs = present(fields, 'logprobs') ? integerInRange(fields, 'logprobs', 0, MAX_TOP_LOGPROBS) : null;
  const maxTokens = present(fields, 'max_tokens') ? numberField(fields, 'max_tokens', { integer: true }) : DEFAULT_MAX_TOKENS;
  // max_tokens 0 with echo scores a prompt without generating (what evaluation harnesses ask for log-likelihoods).
  const least = echo ? 0 : 1;
  if (maxTokens < least || maxTokens > limits.maxContext) {
    throw new ApiError(400, `'max_tokens' must be between ${least} and the context length ${limits.maxContext}, got ${maxTokens}`, 'invalid_request_error', 'max_tokens');
  }
  return { ...sampling, prompts, maxTokens, logprobs, echo };
}

/** A string, an array of strings, an array of token ids, or an array of token-id arrays. */
function parsePrompts(value: unknown): Prompt[] {
  const fail = (why: string) => {
    throw new ApiError(400, `'prompt' ${why}`, 'invalid_request_error', 'prompt');
  };
  const isTokens = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((t) => Number.isSafeInteger(t) && t >= 0);
  if (typeof value === 'string') return [{ text: value }];
  if (!Array.isArray(value)) return fail('must be a string, an array of strings, an array of token ids or an array of token-id arrays');
  if (value.length === 0) return fail('must not be an empty array');
  if (value.every((v) => typeof v === 'string')) return value.map((text: string) => ({ text }));
  if (value.every((v) => typeof v === 'number')) {
    if (!isTokens(value)) return fail('token ids must be non-negative integers');
    return [{ tokens: value }];
  }
  if (value.every((v) => Array.isArray(v))) {
    if (!value.every(isTokens)) return fail('token-id arrays must be non-empty and hold non-negative integers');
    return value.map((tokens: number[]) => ({ tokens }));
  }
  return fail('must not mix strings, token ids and arrays');
}
