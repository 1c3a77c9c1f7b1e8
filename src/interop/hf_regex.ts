/**
 * Hugging Face tokenizers write pre-tokenizer regexes in the Oniguruma/Rust dialect. The one construct Node 20's
 * RegExp lacks is the scoped case-insensitive group `(?i:…)` (Qwen2, Llama 3); it is rewritten with character
 * classes ('s → '[sS]), which matches the same strings for the literal ASCII letters these patterns use; a
 * scoped group holding escapes is refused rather than guessed at.
 */
import { UserError } from '../errors';

export function jsRegex(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    if (pattern.startsWith('(?i:', i)) {
      let depth = 1;
      let j = i + 4;
      for (; j < pattern.length && depth > 0; j++) {
        if (pattern[j] === '\\') j++;
        else if (pattern[j] === '(') depth++;
        else if (pattern[j] === ')') depth--;
      }
      const inner = pattern.slice(i + 4, j - 1);
      if (inner.includes('\\')) throw new UserError(`tokenizer.json: cannot translate the case-insensitive group (?i:${inner}) of a pre-tokenizer regex`);
      out += '(?:' + inner.replace(/[a-zA-Z]/g, (c) => `[${c.toLowerCase()}${c.toUpperCase()}]`) + ')';
      i = j - 1;
    } else {
      out += pattern[i];
    }
  }
  return new RegExp(out, 'gu');
}
