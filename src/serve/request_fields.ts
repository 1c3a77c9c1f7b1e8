/**
 * Reading an OpenAI request body: JSON parsing, typed fields with 400s that name the field, and the sampling
 * fields that `/v1/completions` and `/v1/chat/completions` share.
 */
import { randomInt } from 'node:crypto';
import { ApiError } from './api_error';

export type Fields = Record<string, unknown>;

/** What both endpoints ask of generation, validated. */
export interface SamplingFields {
  model: string | null;
  temperature: number;
  topP: number;
  /** Choice i of each prompt samples with seed + i. */
  seed: number;
  /** Choices per prompt. */
  n: number;
  stop: string[];
  stream: boolean;
  includeUsageInStream: boolean;
}

const DEFAULT_TEMPERATURE = 1;
const MAX_STOP_STRINGS = 4;
/** Choices one request may ask for (per prompt). */
export const MAX_N = 128;
/** Alternatives per position in `logprobs` / `top_logprobs` (vLLM's default cap; OpenAI's is lower). */
export const MAX_TOP_LOGPROBS = 20;

/**
 * OpenAI fields both endpoints accept only at their default (clients such as the openai SDK send some of them), so
 * a request that relies on them fails loudly instead of being answered differently from what it asked.
 */
export const SHARED_AT_DEFAULT: Record<string, (value: unknown) => boolean> = {
  presence_penalty: (v) => v === 0 || v === null,
  frequency_penalty: (v) => v === 0 || v === null,
  logit_bias: (v) => v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0),
  user: (v) => typeof v === 'string' || v === null, // an end-user id for abuse tracking: nothing to do with it here
};

const SAMPLING_KEYS = ['model', 'temperature', 'top_p', 'seed', 'n', 'stop', 'stream', 'stream_options'];

/**
 * Parses the body as a JSON object and checks its keys: every key is one of `known`, the shared sampling fields or
 * a field accepted at its default (and is at it).
 */
export function parseBody(body: string, known: string[], atDefault: Record<string, (value: unknown) => boolean>): Fields {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    throw new ApiError(400, `the request body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ApiError(400, 'the request body must be a JSON object');
  }
  const fields = json as Fields;
  const defaults = { ...SHARED_AT_DEFAULT, ...atDefault };
  const allowed = new Set([...known, ...SAMPLING_KEYS, ...Object.keys(defaults)]);
  for (const key of Object.keys(fields)) {
    if (!allowed.has(key)) throw new ApiError(400, `unknown field '${key}'`, 'invalid_request_error', key);
    const check = defaults[key];
    if (check && !check(fields[key])) {
      throw new ApiError(400, `'${key}' is not supported by this server except at its default`, 'invalid_request_error', key);
    }
  }
  return fields;
}

export const present = (fields: Fields, key: string): boolean => fields[key] !== undefined && fields[key] !== null;

/** model, temperature, top_p, seed, n, stop, stream and stream_options. */
export function parseSamplingFields(fields: Fields): SamplingFields {
  const model = present(fields, 'model') ? stringField(fields, 'model') : null;
  const temperature = present(fields, 'temperature') ? numberField(fields, 'temperature') : DEFAULT_TEMPERATURE;
  if (temperature < 0 || temperature > 2) {
    throw new ApiError(400, `'temperature' must be between 0 and 2, got ${temperature}`, 'invalid_request_error', 'temperature');
  }
  const topP = present(fields, 'top_p') ? numberField(fields, 'top_p') : 1;
  if (!(topP > 0 && topP <= 1)) {
    throw new ApiError(400, `'top_p' must be in (0, 1], got ${topP}`, 'invalid_request_error', 'top_p');
  }
  const n = present(fields, 'n') ? integerInRange(fields, 'n', 1, MAX_N) : 1;
  // Without a seed a request still gets its own stream, just not a reproducible one.
  const seed = present(fields, 'seed') ? numberField(fields, 'seed', { integer: true }) : randomInt(0, 2 ** 32);
  if (seed > Number.MAX_SAFE_INTEGER - (n - 1)) {
    throw new ApiError(400, `'seed' + n − 1 must stay within ±(2^53 − 1) (choice i samples with seed + i)`, 'invalid_request_error', 'seed');
  }

  let stop: string[] = [];
  if (present(fields, 'stop')) {
    const value = fields.stop;
    stop = typeof value === 'string' ? [value] : Array.isArray(value) ? (value as unknown[]).map((s) => s as string) : [];
    const ok = (typeof value === 'string' || Array.isArray(value)) && stop.every((s) => typeof s === 'string' && s.length > 0);
    if (!ok || stop.length > MAX_STOP_STRINGS) {
      throw new ApiError(400, `'stop' must be a non-empty string or an array of at most ${MAX_STOP_STRINGS} non-empty strings`, 'invalid_request_error', 'stop');
    }
  }

  const stream = present(fields, 'stream') ? booleanField(fields, 'stream') : false;
  let includeUsageInStream = false;
  if (present(fields, 'stream_options')) {
    const options = fields.stream_options;
    const keys = typeof options === 'object' && !Array.isArray(options) ? Object.keys(options as object) : null;
    const include = keys ? (options as Fields).include_usage : undefined;
    if (!keys || keys.some((k) => k !== 'include_usage') || (include !== undefined && typeof include !== 'boolean')) {
      throw new ApiError(400, "'stream_options' must be { include_usage: boolean }", 'invalid_request_error', 'stream_options');
    }
    if (!stream) throw new ApiError(400, "'stream_options' is only allowed with stream: true", 'invalid_request_error', 'stream_options');
    includeUsageInStream = include === true;
  }
  return { model, temperature, topP, seed, n, stop, stream, includeUsageInStream };
}

export function stringField(fields: Fields, key: string): string {
  const value = fields[key];
  if (typeof value !== 'string') throw new ApiError(400, `'${key}' must be a string`, 'invalid_request_error', key);
  return value;
}

export function booleanField(fields: Fields, key: string): boolean {
  const value = fields[key];
  if (typeof value !== 'boolean') throw new ApiError(400, `'${key}' must be true or false`, 'invalid_request_error', key);
  return value;
}

export function numberField(fields: Fields, key: string, options: { integer?: boolean } = {}): number {
  const value = fields[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new ApiError(400, `'${key}' must be a number`, 'invalid_request_error', key);
  }
  if (options.integer && !Number.isSafeInteger(value)) {
    throw new ApiError(400, `'${key}' must be an integer`, 'invalid_request_error', key);
  }
  return value;
}

export function integerInRange(fields: Fields, key: string, min: number, max: number): number {
  const value = numberField(fields, key, { integer: true });
  if (value < min || value > max) {
    throw new ApiError(400, `'${key}' must be between ${min} and ${max}, got ${value}`, 'invalid_request_error', key);
  }
  return value;
}
