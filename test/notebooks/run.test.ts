import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// `npm run notebooks` on the real notebooks, with their smallest settings, so they never rot.

const ROOT = path.resolve(__dirname, '..', '..');

test('every notebook runs headlessly, in order, and displays its figures', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-notebooks-'));
  try {
    const run = spawnSync(process.execPath, ['scripts/run-notebooks.js'], {
      cwd: ROOT,
      // Headless here (fast, no Jupyter needed); CI runs `npm run notebooks` in the real tslab kernel as well.
      env: { ...process.env, DSMOE_NOTEBOOK_KERNEL: 'headless', DSMOE_NOTEBOOK_QUICK: '1', DSMOE_NOTEBOOK_OUT: path.join(out, 'displays'), DSMOE_NOTEBOOK_DIR: path.join(out, 'runs') },
      encoding: 'utf8',
      // A hang guard, not a speed check: on the shared 2-core machine under load the three notebooks take 2–3 minutes.
      timeout: 400_000,
    });
    if (run.status !== 0) throw new Error(`run-notebooks failed (${run.signal ?? run.status}):\n${run.stdout.slice(-4000)}\n${run.stderr.slice(-4000)}`);
    for (const name of ['01-train-tiny', '02-convert-and-routing', '03-speedup-report']) expect(run.stdout).toContain(`✓ ${name}.ipynb`);
    const displays = path.join(out, 'displays');
    const svgs = fs.readdirSync(displays).filter((f) => f.endsWith('.html')).map((f) => fs.readFileSync(path.join(displays, f), 'utf8'));
    expect(svgs.length).toBeGreaterThanOrEqual(6); // loss, entropy, load, mass vs k, throughput, roofline
    for (const svg of svgs) expect(svg).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}, 420_000);

test('notebooks are stored without outputs and use the tslab kernel', () => {
  const dir = path.join(ROOT, 'notebooks');
  const notebooks = fs.readdirSync(dir).filter((f) => f.endsWith('.ipynb'));
  expect(notebooks.length).toBe(3);
  for (const file of notebooks) {
    const notebook = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    expect(notebook.metadata.kernelspec.name).toBe('tslab');
    expect(notebook.metadata.dsmoe.min_plots).toBeGreaterThan(0);
    for (const cell of notebook.cells.filter((c: { cell_type: string }) => c.cell_type === 'code')) {
      expect(cell.outputs).toEqual([]);
      expect(cell.execution_count).toBeNull();
      // tslab cannot compile TypeScript outside the notebook's folder: project code comes from the built dist/.
      expect(cell.source.join('')).not.toMatch(/from '\.\.\/src\//);
    }
  }
});
