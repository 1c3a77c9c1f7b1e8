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
