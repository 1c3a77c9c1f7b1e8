import { UserError } from '../errors';

/** "1,4,16,64" → [1, 4, 16, 64]: positive integers, sorted, duplicates removed; errors name the flag. */
export function parseIntegerList(flag: string, text: string): number[] {
  const values = text.split(',').map((part) => part.trim()).filter((part) => part.length > 0).map(Number);
  if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v < 1)) {
    throw new UserError(`${flag} must be a comma-separated list of positive integers, got "${text}"`);
  }
  return [...new Set(values)].sort((a, b) => a - b);
}

/** "0.1,0.48" → [0.1, 0.48]: positive numbers, in the given order. */
export function parseNumberList(flag: string, text: string): number[] {
  const values = text.split(',').map((part) => part.trim()).filter((part) => part.length > 0).map(Number);
  if (values.length === 0 || values.some((v) => !Number.isFinite(v) || v <= 0)) {
    throw new UserError(`${flag} must be a comma-separated list of positive numbers, got "${text}"`);
  }
  return values;
}
