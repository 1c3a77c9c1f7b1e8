import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import { compileCell } from './compile_cell';
import * as tslabStandIn from './tslab_stand_in';

interface NotebookJson {
  cells: { cell_type: string; source: string | string[] }[];
}

/** The code cells of a notebook, in order. */
export function codeCells(file: string): string[] {
  const notebook = JSON.parse(fs.readFileSync(file, 'utf8')) as NotebookJson;
  if (!Array.isArray(notebook.cells)) throw new Error(`${file} is not a Jupyter notebook (no cells)`);
  return notebook.cells
    .filter((cell) => cell.cell_type === 'code')
    .map((cell) => (Array.isArray(cell.source) ? cell.source.join('') : cell.source));
}

const REPOSITORY = path.resolve(__dirname, '..', '..');
const DIST = path.join(REPOSITORY, 'dist');

/**
 * Notebooks import the compiled package (`../dist/…`: the tslab kernel type-checks a cell with the notebook's folder
 * as root and cannot compile TypeScript outside it). Headless, the same import loads the TypeScript source in
 * `src/` (stripped by the launcher's require hook), so this runner always runs the current code without a build.
 */
export function sourceFor(id: string, fromDir: string): string {
  if (!id.startsWith('.')) return id;
  const target = path.resolve(fromDir, id);
  if (target !== DIST && !target.startsWith(DIST + path.sep)) return id;
  return path.join(REPOSITORY, 'src', path.relative(DIST, target));
}

/**
 * Runs every code cell of one notebook in order, in this process's global context (one Node context per notebook:
 * the runner starts a process for each), with the notebook's folder as working directory, as Jupyter does.
 * Throws on the first failing cell, naming it.
 */
export async function executeNotebook(file: string, log: (line: string) => void): Promise<void> {
  const absolute = path.resolve(file);
  process.chdir(path.dirname(absolute));
  const nodeRequire = createRequire(absolute);
  const notebookRequire = (id: string) => (id === 'tslab' ? tslabStandIn : nodeRequire(sourceFor(id, path.dirname(absolute))));
  Object.assign(globalThis, { require: notebookRequire });
  let unhandled: unknown = null;
  process.on('unhandledRejection', (reason) => (unhandled = reason ?? new Error('unhandled rejection')));
  const cells = codeCells(absolute);
  for (let i = 0; i < cells.length; i++) {
    const label = `${path.basename(file)} cell ${i + 1}/${cells.length}`;
    const started = performance.now();
    try {
      const { script } = compileCell(cells[i]);
      await vm.runInThisContext(script, { filename: `${absolute}#cell${i + 1}` });
      if (unhandled) throw unhandled;
    } catch (error) {
      const source = cells[i].split('\n').map((line, n) => `      ${String(n + 1).padStart(3)} | ${line}`).join('\n');
      const detail = error instanceof Error ? error.stack ?? error.message : String(error);
      throw new Error(`${label} failed:\n${source}\n\n${detail}`);
    }
    log(`  ${label} ok (${((performance.now() - started) / 1000).toFixed(1)} s)`);
  }
}
