/**
 * `npm run notebooks`: executes the code cells of every notebook headlessly, each notebook in a fresh Node process
 * (so one notebook's globals and native state cannot leak into the next), and stops at the first failure.
 *
 *   node scripts/run-notebooks.js [NOTEBOOK.ipynb ...]      default: notebooks/*.ipynb, in name order
 *
 * Environment: DSMOE_NOTEBOOK_QUICK=1 asks the notebooks for their smallest settings (the test suite uses it);
 * DSMOE_NOTEBOOK_DIR=DIR moves their runs (checkpoints, plans, reports) from checkpoints/notebooks to DIR;
 * DSMOE_NOTEBOOK_OUT=DIR keeps their displayed outputs (SVG, Markdown) there.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { executeNotebook } from './execute_notebook';

const REPOSITORY = path.resolve(__dirname, '..', '..');

export async function main(argv: string[], launcher: string): Promise<number> {
  if (argv[0] === '--one') {
    try {
      await executeNotebook(argv[1], (line) => process.stdout.write(line + '\n'));
      return 0;
    } catch (error) {
      process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
      return 1;
    }
  }
  const notebooks = argv.length ? argv.map((f) => path.resolve(f)) : defaultNotebooks();
  if (!notebooks.length) {
    process.stderr.write('run-notebooks: no notebooks found\n');
    return 1;
  }
  for (const notebook of notebooks) {
    process.stdout.write(`▶ ${path.relative(process.cwd(), notebook)}\n`);
    const started = performance.now();
    const child = spawnSync(process.execPath, [launcher, '--one', notebook], {
      stdio: 'inherit',
      env: { ...process.env, DSMOE_NOTEBOOK_NAME: path.basename(notebook, '.ipynb') },
    });
    if (child.status !== 0) {
      process.stderr.write(`run-notebooks: ${path.basename(notebook)} failed (${child.signal ?? `exit ${child.status}`})\n`);
      return 1;
    }
    process.stdout.write(`✓ ${path.basename(notebook)} (${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
  }
  return 0;
}

function defaultNotebooks(): string[] {
  const dir = path.join(REPOSITORY, 'notebooks');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.ipynb')).sort().map((f) => path.join(dir, f));
}
