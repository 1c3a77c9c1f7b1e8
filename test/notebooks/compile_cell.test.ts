import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { compileCell } from '../../src/notebooks/compile_cell';

// The headless runner's cell compiler and its failure behaviour, on small synthetic notebooks.

const ROOT = path.resolve(__dirname, '..', '..');

async function runCells(cells: string[]): Promise<Record<string, unknown>> {
  const context = vm.createContext({ require, console, setTimeout });
  for (const cell of cells) await vm.runInContext(compileCell(cell).script, context);
  return context;
}

test('declarations carry over between cells, with top-level await, destructuring, functions and classes', async () => {
  const scope = await runCells([
    "import path from 'path';\nimport { join as joinPath } from 'path';\nimport * as os from 'os';\nimport type { Stats } from 'fs';\nconst answer: number = 21;",
    'let { a, b: [c, d = 4] } = { a: 1, b: [3] };\nconst waited = await new Promise<number>((resolve) => setTimeout(() => resolve(answer * 2), 1));',
    'function twice(x: number): number { return 2 * x; }\nclass Counter { n = 0; add(): this { this.n++; return this; } }',
    "const summary = [twice(waited), a, c, d, new Counter().add().add().n, path.basename(joinPath('x', 'y.txt')), typeof os.cpus];",
  ]);
  expect(scope.summary).toEqual([84, 1, 3, 4, 2, 'y.txt', 'function']);
});

test('a failing cell stops the run, names the cell, and exits non-zero', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-runner-'));
  try {
    const cells = ["const x = 1;\nconsole.log('first ran');", "throw new Error('boom in the second cell');", "console.log('third ran');"];
    const notebook = {
      cells: cells.map((source) => ({ cell_type: 'code', metadata: {}, execution_count: null, outputs: [], source })),
      metadata: {},
      nbformat: 4,
      nbformat_minor: 5,
    };
    fs.writeFileSync(path.join(dir, 'broken.ipynb'), JSON.stringify(notebook));
    const run = spawnSync(process.execPath, ['scripts/run-notebooks.js', path.join(dir, 'broken.ipynb')], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, DSMOE_NOTEBOOK_KERNEL: 'headless' }, // the headless runner's reporting, even where Jupyter is installed
    });
    expect(run.status).toBe(1);
    expect(run.stdout).toContain('first ran');
    expect(run.stdout).not.toContain('third ran');
    expect(run.stderr).toContain('broken.ipynb cell 2/3 failed');
    expect(run.stderr).toContain('boom in the second cell');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
