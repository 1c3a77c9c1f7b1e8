/** Number formatting shared by report.md and the CLI headline. */

/** About three significant digits without exponent notation: 1.23, 12.3, 123, 1010. */
function threeDigits(x: number): string {
  const a = Math.abs(x);
  return x.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2);
}

/** 1234567 → "1.23M". */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  const units: [number, string][] = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'k']];
  for (const [scale, suffix] of units) if (Math.abs(n) >= scale) return `${threeDigits(n / scale)}${suffix}`;
  return String(Math.round(n));
}

/** 1058816 → "1010 KiB", 3.36e9 → "3.13 GiB". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  const units: [number, string][] = [[2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']];
  for (const [scale, suffix] of units) if (Math.abs(n) >= scale) return `${threeDigits(n / scale)} ${suffix}`;
  return `${Math.round(n)} B`;
}

/** Fixed decimals, "n/a" for NaN/Infinity. */
export function fixed(n: number | null | undefined, digits = 2): string {
  return n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits);
}

export function percent(fraction: number, digits = 1): string {
  return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(digits)}%` : 'n/a';
}

/** A Markdown table from a header and rows of cells. */
export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
