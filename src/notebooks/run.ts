/**
 * `npm run notebooks`: executes every notebook in order and stops at the first failure. In the real kernel when
 * Jupyter (`jupyter-nbconvert`) and tslab are installed: `jupyter nbconvert --execute` under tslab, against a fresh
 * build of dist/ (what the notebooks import), then the executed notebooks' outputs are checked for errors and plots
 * (tslab_kernel.ts). Otherwise headlessly: each notebook's code cells in a fresh Node process (so one notebook's
 * globals and native state cannot leak into the next), on the TypeScript source (execute_notebook.ts).
 *
 *   node scripts/run-notebooks.js [NOTEBOOK.ipynb ...]      default: notebooks/*.ipynb, in name order
 *
 * Environment: DSMOE_NOTEBOOK_KERNEL=tslab|headless forces a runner (default: tslab when installed);
 * DSMOE_NOTEBOOK_QUICK=1 asks the notebooks for their smallest settings (the test suite uses it);
 * DSMOE_NOTEBOOK_DIR=DIR moves their runs (checkpoints, plans, reports) from checkpoints/notebooks to DIR;
 * DSMOE_NOTEBOOK_OUT=DIR keeps their displayed outputs (SVG, Markdown) there, and the executed notebooks.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { executeNotebook } from './execute_notebook';
import { checkExecutedNotebook, executeInKernel, findJupyterTools, writeKernelspec, type JupyterTools } from './tslab_kernel';

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
  const choice = process.env.DSMOE_NOTEBOOK_KERNEL ?? 'auto';
  if (!['auto', 'tslab', 'headless'].includes(choice)) {
    process.stderr.write(`run-notebooks: DSMOE_NOTEBOOK_KERNEL must be tslab or headless, got ${JSON.stringify(choice)}\n`);
    return 1;
  }
  const tools = choice === 'headless' ? null : findJupyterTools(REPOSITORY);
  if (choice === 'tslab' && !tools) {
    process.stderr.write('run-notebooks: DSMOE_NOTEBOOK_KERNEL=tslab, but jupyter-nbconvert or tslab is not installed (apt-get install jupyter-nbconvert python3-jupyter-client; npm install -g tslab)\n');
    return 1;
  }
  if (tools) return runInKernel(notebooks, tools);
  const why = choice === 'headless' ? 'DSMOE_NOTEBOOK_KERNEL=headless' : 'jupyter-nbconvert and tslab not both installed';
  process.stdout.write(`run-notebooks: headless runner (${why})\n`);
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

/** Builds dist/ (what the notebooks import), then executes and checks each notebook in the tslab kernel. */
function runInKernel(notebooks: string[], tools: JupyterTools): number {
  process.stdout.write(`run-notebooks: tslab kernel (${tools.tslab}) via ${tools.nbconvert}; building dist/ first\n`);
  const build = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(REPOSITORY, 'tsconfig.build.json')], { stdio: 'inherit' });
  if (build.status !== 0) {
    process.stderr.write('run-notebooks: building dist/ failed\n');
    return 1;
  }
  const jupyterPath = writeKernelspec(tools.tslab);
  const displays = process.env.DSMOE_NOTEBOOK_OUT;
  const executedDir = displays ?? fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-notebooks-executed-'));
  try {
    for (const notebook of notebooks) {
      process.stdout.write(`▶ ${path.relative(process.cwd(), notebook)}\n`);
      const started = performance.now();
      const executed = executeInKernel(notebook, tools, jupyterPath, executedDir);
      const plots = checkExecutedNotebook(executed, displays);
      process.stdout.write(`✓ ${path.basename(notebook)} in the tslab kernel, ${plots} plot(s) (${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
    }
    return 0;
  } catch (error) {
    process.stderr.write(`run-notebooks: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    fs.rmSync(jupyterPath, { recursive: true, force: true });
    if (!displays) fs.rmSync(executedDir, { recursive: true, force: true });
  }
}

function defaultNotebooks(): string[] {
  const dir = path.join(REPOSITORY, 'notebooks');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.ipynb')).sort().map((f) => path.join(dir, f));
}
