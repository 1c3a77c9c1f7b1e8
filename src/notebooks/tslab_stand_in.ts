/**
 * What `import * as tslab from 'tslab'` gives a notebook when it runs headlessly: the same `display` calls, which
 * write each output to `DSMOE_NOTEBOOK_OUT` (when set) and print a one-line note, so plots are produced and
 * checked for being non-empty without Jupyter.
 */
import fs from 'node:fs';
import path from 'node:path';

let outputs = 0;

function show(kind: string, extension: string, content: string | Uint8Array): void {
  const size = typeof content === 'string' ? Buffer.byteLength(content) : content.length;
  if (size === 0) throw new Error(`display.${kind} was given empty content`);
  const outDir = process.env.DSMOE_NOTEBOOK_OUT;
  const stem = process.env.DSMOE_NOTEBOOK_NAME ?? 'notebook';
  let where = '';
  if (outDir) {
    fs.mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, `${stem}-${String(++outputs).padStart(2, '0')}.${extension}`);
    fs.writeFileSync(file, content);
    where = ` → ${file}`;
  }
  process.stdout.write(`    [display ${kind}, ${size} bytes${where}]\n`);
}

export const display = {
  text: (s: string) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'),
  html: (s: string) => show('html', 'html', s),
  markdown: (s: string) => show('markdown', 'md', s),
  svg: (s: string) => show('svg', 'svg', s),
  png: (b: Uint8Array) => show('png', 'png', b),
  jpeg: (b: Uint8Array) => show('jpeg', 'jpg', b),
  javascript: (s: string) => show('javascript', 'js', s),
  latex: (s: string) => show('latex', 'tex', s),
};

export function newDisplay(): typeof display {
  return display;
}

export function isLocal(): boolean {
  return true;
}
