/**
 * Chat messages → prompt text, the way transformers' `apply_chat_template` does it: the model's Jinja chat template
 * (`chat_template.jinja`, else `chat_template` in tokenizer_config.json) rendered by @huggingface/jinja, the Jinja
 * subset Hugging Face wrote for exactly these templates, with `messages`, `add_generation_prompt: true` and the
 * tokenizer's special tokens. A base model has no template; it gets PLAIN_CHAT_TEMPLATE.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { readJsonFile } from '../checkpoint/files';
import { UserError } from '../errors';
import { ApiError } from './api_error';
import type { ChatMessage } from './chat_request';

/**
 * The default for models without a template: one paragraph per message, "Role: content", then "Assistant:" for the
 * model to continue. A base model was never taught to stop at the end of its turn, so clients usually also send
 * `stop: ["\nUser:"]`.
 */
export const PLAIN_CHAT_TEMPLATE =
  "{%- for message in messages -%}{{ message.role | capitalize }}: {{ message.content }}{{ '\\n\\n' }}{%- endfor -%}" +
  '{%- if add_generation_prompt -%}Assistant:{%- endif -%}';

export interface ChatTemplate {
  /** Where the template came from (a file, or "plain default"), for messages. */
  source: string;
  /**
   * True for the plain default, which writes no BOS of its own: its text is tokenized as a completions prompt is,
   * with the tokenizer's BOS. A model's template writes its own (`{{ bos_token }}`) and is tokenized as it renders.
   */
  addsTokenizerBos?: boolean;
  render(messages: ChatMessage[]): string;
}

/** Special tokens the template may use, by the names transformers passes (bos_token, eos_token, …). */
export type SpecialTokens = Record<string, string>;

/** Compiles a template; a template that does not parse is the model folder's fault, reported as a UserError. */
export function compileChatTemplate(template: string, specialTokens: SpecialTokens, source: string): ChatTemplate {
  let compiled: Template;
  try {
    compiled = new Template(template);
  } catch (error) {
    throw new UserError(`${source}: the chat template does not parse: ${(error as Error).message}`);
  }
  return {
    source,
    ...(template === PLAIN_CHAT_TEMPLATE ? { addsTokenizerBos: true } : {}),
    render(messages) {
      try {
        return compiled.render({ ...specialTokens, messages, add_generation_prompt: true });
      } catch (error) {
        // Templates reject conversations they cannot format (raise_exception), e.g. roles out of order.
        throw new ApiError(400, `the chat template (${source}) refused these messages: ${(error as Error).message}`, 'invalid_request_error', 'messages');
      }
    },
  };
}

/** The chat template of a model folder: chat_template.jinja, tokenizer_config.json's chat_template, or the plain default. */
export function loadChatTemplate(dir: string): ChatTemplate {
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = fs.existsSync(configFile) ? (readJsonFile(configFile) as Record<string, unknown>) : {};
  const specialTokens: SpecialTokens = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const value = config[key];
    const text = typeof value === 'string' ? value : typeof (value as { content?: unknown })?.content === 'string' ? (value as { content: string }).content : null;
    if (text !== null) specialTokens[key] = text;
  }
  const jinjaFile = path.join(dir, 'chat_template.jinja');
  if (fs.existsSync(jinjaFile)) return compileChatTemplate(fs.readFileSync(jinjaFile, 'utf8'), specialTokens, jinjaFile);
  const template = config.chat_template;
  if (template === undefined || template === null) return compileChatTemplate(PLAIN_CHAT_TEMPLATE, specialTokens, 'plain default');
  if (typeof template === 'string') return compileChatTemplate(template, specialTokens, configFile);
  // transformers also allows named templates: [{ name, template }], of which "default" is the chat one.
  if (Array.isArray(template)) {
    const named = template.find((t) => (t as { name?: unknown })?.name === 'default') as { template?: unknown } | undefined;
    if (named && typeof named.template === 'string') return compileChatTemplate(named.template, specialTokens, `${configFile} (chat_template "default")`);
  }
  throw new UserError(`${configFile}: chat_template must be a string or a list of { name, template } holding "default"`);
}
