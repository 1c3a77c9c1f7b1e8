import { ApiError } from './api_error';
import { MAX_TOP_LOGPROBS, booleanField, integerInRange, parseBody, parseSamplingFields, present, type SamplingFields } from './request_fields';

/** A chat message as the chat template sees it: content is always text. */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string;
  name?: string;
}

/** A validated `POST /v1/chat/completions` body. */
export interface ChatRequest extends SamplingFields {
  messages: ChatMessage[];
  /** null: up to the end of the context (OpenAI's and vLLM's default for chat). */
  maxTokens: number | null;
  logprobs: boolean;
  /** Alternatives per generated token (with logprobs). */
  topLogprobs: number;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant']);

/** Fields a base model cannot honour, accepted at the values that ask nothing of it. */
const AT_DEFAULT: Record<string, (value: unknown) => boolean> = {
  response_format: (v) => v === null || (typeof v === 'object' && (v as { type?: unknown }).type === 'text' && Object.keys(v as object).length === 1),
  tools: (v) => v === null || (Array.isArray(v) && v.length === 0),
  tool_choice: (v) => v === null || v === 'none',
  parallel_tool_calls: (v) => v === null || typeof v === 'boolean',
};

/** Parses and validates a chat completions body; throws ApiError(400) naming the offending field. */
export function parseChatRequest(body: string, limits: { maxContext: number }): ChatRequest {
  const fields = parseBody(body, ['messages', 'max_tokens', 'max_completion_tokens', 'logprobs', 'top_logprobs'], AT_DEFAULT);
  const sampling = parseSamplingFields(fields);
  if (!present(fields, 'messages')) throw new ApiError(400, "'messages' is required", 'invalid_request_error', 'messages');
  const messages = parseMessages(fields.messages);
  // max_completion_tokens replaced max_tokens in OpenAI's API; both are read, and they must agree if both are sent.
  let maxTokens: number | null = null;
  for (const key of ['max_completion_tokens', 'max_tokens']) {
    if (!present(fields, key)) continue;
    const value = integerInRange(fields, key, 1, limits.maxContext);
    if (maxTokens !== null && value !== maxTokens) {
      throw new ApiError(400, `'max_tokens' (${value}) and 'max_completion_tokens' (${maxTokens}) differ; send one`, 'invalid_request_error', key);
    }
    maxTokens = value;
  }
  const logprobs = present(fields, 'logprobs') ? booleanField(fields, 'logprobs') : false;
  const topLogprobs = present(fields, 'top_logprobs') ? integerInRange(fields, 'top_logprobs', 0, MAX_TOP_LOGPROBS) : 0;
  if (present(fields, 'top_logprobs') && !logprobs) {
    throw new ApiError(400, "'top_logprobs' needs 'logprobs': true", 'invalid_request_error', 'top_logprobs');
  }
  return { ...sampling, messages, maxTokens, logprobs, topLogprobs };
}

function parseMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new ApiError(400, "'messages' must be a non-empty array of { role, content }", 'invalid_request_error', 'messages');
  }
  return value.map((message, i) => {
    const param = `messages[${i}]`;
    const fail = (why: string): never => {
      throw new ApiError(400, `${param} ${why}`, 'invalid_request_error', param);
    };
    if (typeof message !== 'object' || message === null || Array.isArray(message)) return fail('must be an object { role, content }');
    const { role, content, name, ...rest } = message as Record<string, unknown>;
    const extra = Object.keys(rest)[0];
    if (extra !== undefined) fail(`has '${extra}', which this server does not support (no tools or audio)`);
    if (typeof role !== 'string' || !ROLES.has(role)) fail(`has role ${JSON.stringify(role)}; expected system, developer, user or assistant`);
    if (name !== undefined && typeof name !== 'string') fail("has a 'name' that is not a string");
    return { role: role as ChatMessage['role'], content: messageText(content, fail), ...(typeof name === 'string' ? { name } : {}) };
  });
}

/** Content as a string, or an array of text parts (joined with newlines, as vLLM does); images and audio are refused. */
function messageText(content: unknown, fail: (why: string) => never): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return fail("needs 'content': a string or an array of { type: 'text', text } parts");
  return content
    .map((part) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (!p || p.type !== 'text' || typeof p.text !== 'string') return fail("has a content part that is not { type: 'text', text } (this model reads text only)");
      return p.text;
    })
    .join('\n');
}
