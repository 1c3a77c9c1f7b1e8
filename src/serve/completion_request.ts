import { randomInt } from 'node:crypto';
import { ApiError } from './api_error';

/** A validated `POST /v1/completions` body. */
export interface CompletionRequest {
  model: string | null;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  stop: string[];
  stream: boolean;
  includeUsageInStream: boolean;
}

/** Fields we implement, with OpenAI's defaults where the client leaves them out. */
const DEFAULT_MAX_TOKENS = 16;
const DEFAULT_TEMPERATURE = 1;
const MAX_STOP_STRINGS = 4;

/**
 * OpenAI fields we accept only at their default (clients such as the openai SDK send some of them), so a request
 * that relies on them fails loudly instead of being answered differently from what it asked.
 */
const ACCEPTED_AT_DEFAULT: Record<string, (value: unknown) => boolean> = {
  n: (v) => v === 1 || v === null,
  best_of: (v) => v === 1 || v === null,
  echo: (v) => v === false || v === null,
  logprobs: (v) => v === null || v === 0,
  presence_penalty: (v) => v === 0 || v === null,
  frequency_penalty: (v) => v === 0 || v === null,
  logit_bias: (v) => v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0),
  suffix: (v) => v === null || v === '',
  user: (v) => typeof v === 'string' || v === null, // an end-user id for abuse tracking: nothing to do with it here
};

const KNOWN = new Set(['model', 'prompt', 'max_tokens', 'temperature', 'top_p', 'seed', 'stop', 'stream', 'stream_options', ...Object.keys(ACCEPTED_AT_DEFAULT)]);

/** Parses and validates a request body; throws ApiError(400) naming the offending field. */
export function parseCompletionRequest(body: string, limits: { maxContext: number }): CompletionRequest {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    throw new ApiError(400, `the request body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ApiError(400, 'the request body must be a JSON object');
  }
  const fields = json as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!KNOWN.has(key)) throw new ApiError(400, `unknown field '${key}'`, 'invalid_request_error', key);
    const atDefault = ACCEPTED_AT_DEFAULT[key];
    if (atDefault && !atDefault(fields[key])) {
      throw new ApiError(400, `'${key}' is not supported by this server except at its default`, 'invalid_request_error', key);
    }
  }
  const present = (key: string) => fields[key] !== undefined && fields[key] !== null;

  const model = present('model') ? stringField(fields, 'model') : null;
  let prompt = '';
  if (present('prompt')) {
    const value = fields.prompt;
    if (typeof value === 'string') prompt = value;
    else if (Array.isArray(value) && value.length === 1 && typeof value[0] === 'string') prompt = value[0];
    else throw new ApiError(400, "'prompt' must be a string (or an array holding one string)", 'invalid_request_error', 'prompt');
  }

  const maxTokens = present('max_tokens') ? numberField(fields, 'max_tokens', { integer: true }) : DEFAULT_MAX_TOKENS;
  if (maxTokens <= 0 || maxTokens > limits.maxContext) {
    throw new ApiError(400, `'max_tokens' must be between 1 and the context length ${limits.maxContext}, got ${maxTokens}`, 'invalid_request_error', 'max_tokens');
  }
  const temperature = present('temperature') ? numberField(fields, 'temperature') : DEFAULT_TEMPERATURE;
  if (temperature < 0 || temperature > 2) {
    throw new ApiError(400, `'temperature' must be between 0 and 2, got ${temperature}`, 'invalid_request_error', 'temperature');
  }
  const topP = present('top_p') ? numberField(fields, 'top_p') : 1;
  if (!(topP > 0 && topP <= 1)) {
    throw new ApiError(400, `'top_p' must be in (0, 1], got ${topP}`, 'invalid_request_error', 'top_p');
  }
  // Without a seed a request still gets its own stream, just not a reproducible one.
  const seed = present('seed') ? numberField(fields, 'seed', { integer: true }) : randomInt(0, 2 ** 32);

  let stop: string[] = [];
  if (present('stop')) {
    const value = fields.stop;
    stop = typeof value === 'string' ? [value] : Array.isArray(value) ? (value as unknown[]).map((s) => s as string) : [];
    const ok = (typeof value === 'string' || Array.isArray(value)) && stop.every((s) => typeof s === 'string' && s.length > 0);
    if (!ok || stop.length > MAX_STOP_STRINGS) {
      throw new ApiError(400, `'stop' must be a non-empty string or an array of at most ${MAX_STOP_STRINGS} non-empty strings`, 'invalid_request_error', 'stop');
    }
  }

  const stream = present('stream') ? booleanField(fields, 'stream') : false;
  let includeUsageInStream = false;
  if (present('stream_options')) {
    const options = fields.stream_options;
    const keys = typeof options === 'object' && !Array.isArray(options) ? Object.keys(options as object) : null;
    const include = keys ? (options as Record<string, unknown>).include_usage : undefined;
    if (!keys || keys.some((k) => k !== 'include_usage') || (include !== undefined && typeof include !== 'boolean')) {
      throw new ApiError(400, "'stream_options' must be { include_usage: boolean }", 'invalid_request_error', 'stream_options');
    }
    if (!stream) throw new ApiError(400, "'stream_options' is only allowed with stream: true", 'invalid_request_error', 'stream_options');
    includeUsageInStream = include === true;
  }
  return { model, prompt, maxTokens, temperature, topP, seed, stop, stream, includeUsageInStream };
}

function stringField(fields: Record<string, unknown>, key: string): string {
  const value = fields[key];
  if (typeof value !== 'string') throw new ApiError(400, `'${key}' must be a string`, 'invalid_request_error', key);
  return value;
}

function booleanField(fields: Record<string, unknown>, key: string): boolean {
  const value = fields[key];
  if (typeof value !== 'boolean') throw new ApiError(400, `'${key}' must be true or false`, 'invalid_request_error', key);
  return value;
}

function numberField(fields: Record<string, unknown>, key: string, options: { integer?: boolean } = {}): number {
  const value = fields[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new ApiError(400, `'${key}' must be a number`, 'invalid_request_error', key);
  }
  if (options.integer && !Number.isSafeInteger(value)) {
    throw new ApiError(400, `'${key}' must be an integer`, 'invalid_request_error', key);
  }
  return value;
}
