/**
 * Running a notebook in the real tslab kernel: `jupyter nbconvert --execute` (Debian's jupyter-nbconvert) starts
 * tslab (npm) through a kernelspec written here, executes every cell, and saves the executed notebook; its outputs
 * are then checked: no cell failed (nbconvert also stops at a failing cell; tslab leaves execution_count empty, so
 * that cannot tell what ran), and the notebook displayed at least the plots its metadata promises
 * (`metadata.dsmoe.min_plots`, an SVG each). Displays are also written out like the headless runner's.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface JupyterTools {
  nbconvert: string;
  tslab: string;
}

/** `jupyter-nbconvert` and `tslab` on the PATH (or tslab in node_modules/.bin), or null when either is missing. */
export function findJupyterTools(repository: string): JupyterTools | null {
  const works = (command: string, args: string[]) => spawnSync(command, args, { stdio: 'ignore', timeout: 60_000 }).status === 0;
  if (!works('jupyter-nbconvert', ['--version'])) return null;
  const local = path.join(repository, 'node_modules', '.bin', 'tslab');
  for (const tslab of [local, 'tslab']) {
    if ((tslab === 'tslab' || fs.existsSync(tslab)) && works(tslab, ['--version'])) return { nbconvert: 'jupyter-nbconvert', tslab };
  }
  return null;
}

/**
 * A JUPYTER_PATH folder holding the `tslab` kernelspec (what `tslab install` writes, without needing IPython to
 * write it), so the kernel is found whatever the user has registered.
 */
export function writeKernelspec(tslab: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-jupyter-'));
  fs.mkdirSync(path.join(dir, 'kernels', 'tslab'), { recursive: true });
  const spec = { argv: [tslab, 'kernel', '--config-path', '{connection_file}'], display_name: 'TypeScript', language: 'typescript' };
  fs.writeFileSync(path.join(dir, 'kernels', 'tslab', 'kernel.json'), JSON.stringify(spec, null, 1));
  return dir;
}

/** Executes one notebook under tslab; returns the executed copy's path (in `outDir`). Throws if nbconvert fails. */
export function executeInKernel(notebook: string, tools: JupyterTools, jupyterPath: string, outDir: string): string {
  const stem = path.basename(notebook, '.ipynb');
  const run = spawnSync(
    tools.nbconvert,
    ['--to', 'notebook', '--execute', '--ExecutePreprocessor.kernel_name=tslab', '--ExecutePreprocessor.timeout=3600', '--output-dir', outDir, '--output', `${stem}.executed`, notebook],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, JUPYTER_PATH: [jupyterPath, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter) },
    },
  );
  if (run.status !== 0) throw new Error(`jupyter nbconvert --execute ${path.basename(notebook)} failed (${run.signal ?? `exit ${run.status}`})`);
  return path.join(outDir, `${stem}.executed.ipynb`);
}

interface ExecutedCell {
  cell_type: string;
  outputs?: { output_type: string; ename?: string; evalue?: string; text?: string | string[]; data?: Record<string, string | string[]> }[];
}

const joined = (value: string | string[] | undefined): string => (Array.isArray(value) ? value.join('') : value ?? '');

/**
 * Checks an executed notebook: no cell printed an error or failed to compile, and at least `metadata.dsmoe.min_plots`
 * displays hold an SVG. Writes each display to `displaysDir` (when given) as `<stem>-NN.<ext>`. Returns the number
 * of plots. Throws naming the cell or the shortfall.
 */
export function checkExecutedNotebook(file: string, displaysDir?: string): number {
  const notebook = JSON.parse(fs.readFileSync(file, 'utf8')) as { cells: ExecutedCell[]; metadata?: { dsmoe?: { min_plots?: number } } };
  const stem = path.basename(file).replace(/(\.executed)?\.ipynb$/, '');
  let plots = 0;
  let displays = 0;
  notebook.cells
    .filter((cell) => cell.cell_type === 'code')
    .forEach((cell, i) => {
      for (const output of cell.outputs ?? []) {
        if (output.output_type === 'error') throw new Error(`${stem}: code cell ${i + 1} failed: ${output.ename}: ${output.evalue}`);
        // tslab reports a compile error as text on stderr and stops the notebook; treat it as a failure too.
        if (output.output_type === 'stream' && (output as { name?: string }).name === 'stderr' && /^\d+:\d+ - /m.test(joined(output.text))) {
          throw new Error(`${stem}: code cell ${i + 1} did not compile: ${joined(output.text).trim()}`);
        }
        if (output.output_type !== 'display_data' || !output.data) continue;
        const [mime, extension] = output.data['image/svg+xml'] ? ['image/svg+xml', 'svg'] : output.data['text/html'] ? ['text/html', 'html'] : output.data['text/markdown'] ? ['text/markdown', 'md'] : [null, null];
        if (!mime || !extension) continue;
        const content = joined(output.data[mime]);
        if (/<svg[\s\S]*<\/svg>/.test(content)) plots++;
        if (displaysDir) {
          fs.mkdirSync(displaysDir, { recursive: true });
          fs.writeFileSync(path.join(displaysDir, `${stem}-${String(++displays).padStart(2, '0')}.${extension}`), content);
        }
      }
    });
  const expected = notebook.metadata?.dsmoe?.min_plots ?? 0;
  if (plots < expected) throw new Error(`${stem}: displayed ${plots} plot(s), expected at least ${expected}`);
  return plots;
}
