/**
 * The end-of-text token of an imported Hugging Face tokenizer, shared by the byte-level reader
 * (src/interop/hf_tokenizer.ts) and the package-backed one (src/interop/hf_package_tokenizer.ts).
 */
import * as fs from 'fs';
import * as path from 'path';

type Json = Record<string, unknown>;

/** tokenizer_config.json as an object ({} when the folder has none); `fail` on invalid JSON. */
export function readTokenizerConfig(dir: string, fail: (m: string) => never): Json {
  const configFile = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(configFile)) return {};
  try {
    const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as unknown;
    return config && typeof config === 'object' && !Array.isArray(config) ? (config as Json) : fail(`${configFile}: expected a JSON object`);
  } catch (error) {
    return fail(`${configFile}: invalid JSON (${(error as Error).message})`);
  }
}

/** The end-of-text id: tokenizer_config.json's eos_token, else <|endoftext|>, </s> or <eos>. */
export function endOfTextId(dir: string, idOf: (content: string) => number | undefined, fail: (m: string) => never): number {
  const token = readTokenizerConfig(dir, fail).eos_token as string | Json | null | undefined;
  const eos = typeof token === 'string' ? token : token && typeof token.content === 'string' ? token.content : undefined;
  for (const candidate of [eos, '<|endoftext|>', '</s>', '<eos>']) {
    if (candidate === undefined) continue;
    const id = idOf(candidate);
    if (typeof id === 'number') return id;
  }
  return fail('no end-of-text token (tokenizer_config.json eos_token, <|endoftext|>, </s> or <eos>)');
}

/**
 * Tokenizer classes whose transformers fast tokenizer rebuilds its post-processor from tokenizer_config.json's
 * `add_bos_token` (default true) and `bos_token` when it loads (`LlamaTokenizerFast.update_post_processor`, the same
 * in Gemma's and CodeLlama's), whatever the file's post_processor says.
 */
const BOS_FROM_CONFIG = new Set(['LlamaTokenizer', 'LlamaTokenizerFast', 'CodeLlamaTokenizer', 'CodeLlamaTokenizerFast', 'GemmaTokenizer', 'GemmaTokenizerFast']);
const DEFAULT_BOS: Record<string, string> = { GemmaTokenizer: '<bos>', GemmaTokenizerFast: '<bos>' };

function tokenContent(token: unknown): string | undefined {
  if (typeof token === 'string') return token;
  const content = (token as Json | null | undefined)?.content;
  return typeof content === 'string' ? content : undefined;
}

/**
 * The token transformers puts before a prompt (`tokenizer(text)`, i.e. add_special_tokens=True), or undefined when it
 * puts none: for the Llama-family classes above, `bos_token` when `add_bos_token` is not false; otherwise the special
 * token the file's post_processor places before the text (TemplateProcessing's `single` starting with a SpecialToken,
 * Bert/RobertaProcessing's `cls`, either inside a Sequence). GPT-2 and Qwen2 files (ByteLevel or no post_processor)
 * get none. Tokens a template appends after the text (add_eos_token) are not taken: a prompt is continued, not ended.
 */
export function promptBosId(json: Json, config: Json, idOf: (content: string) => number | undefined, fail: (m: string) => never): number | undefined {
  const tokenizerClass = config.tokenizer_class;
  if (typeof tokenizerClass === 'string' && BOS_FROM_CONFIG.has(tokenizerClass)) {
    if (config.add_bos_token === false) return undefined;
    const bos = tokenContent(config.bos_token) ?? DEFAULT_BOS[tokenizerClass] ?? '<s>';
    const id = idOf(bos);
    return id !== undefined ? id : fail(`tokenizer_config.json: bos_token ${JSON.stringify(bos)} (added before prompts by ${tokenizerClass}) is not in the vocabulary`);
  }
  return leadingSpecialToken(json.post_processor as Json | null | undefined, fail);
}

function leadingSpecialToken(processor: Json | null | undefined, fail: (m: string) => never): number | undefined {
  if (!processor) return undefined;
  switch (processor.type) {
    case 'Sequence':
      for (const step of (processor.processors ?? []) as Json[]) {
        const id = leadingSpecialToken(step, fail);
        if (id !== undefined) return id;
      }
      return undefined;
    case 'TemplateProcessing': {
      const first = ((processor.single ?? []) as Json[])[0] as Json | undefined;
      const special = first?.SpecialToken as Json | undefined;
      if (!special) return undefined;
      const entry = ((processor.special_tokens ?? {}) as Record<string, Json>)[String(special.id)];
      const ids = entry?.ids as unknown;
      if (!Array.isArray(ids) || ids.length !== 1 || !Number.isInteger(ids[0])) {
        return fail(`post_processor: the special token ${JSON.stringify(special.id)} before $A must have exactly one id in special_tokens, got ${JSON.stringify(ids)}`);
      }
      return ids[0] as number;
    }
    case 'BertProcessing':
    case 'RobertaProcessing': {
      const cls = processor.cls as unknown;
      return Array.isArray(cls) && Number.isInteger(cls[1]) ? (cls[1] as number) : fail(`post_processor ${processor.type}: cls must be [token, id], got ${JSON.stringify(cls)}`);
    }
    default:
      return undefined;
  }
}
