import { createHash } from 'crypto';
import type { Recipe } from './types';

/** JSON with object keys sorted at every level, so that equal recipes always serialise identically. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value as Record<string, unknown>)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * sha256 (hex) of the resolved recipe, for resume checks. `file` is left out: moving or renaming the recipe file
 * does not change the run; every value that shapes training is in.
 */
export function recipeHash(recipe: Recipe): string {
  const { file: _file, ...content } = recipe;
  return createHash('sha256').update(canonicalJson(content)).digest('hex');
}
