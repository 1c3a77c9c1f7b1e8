/** Helpers for values read from YAML/JSON files before they are checked against a schema. */

export type Raw = Record<string, unknown>;

export function isMapping(value: unknown): value is Raw {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A value as an error message quotes it: JSON where it has a JSON form, else its string. */
export function show(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text;
}
