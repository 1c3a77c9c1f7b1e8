import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkExecutedNotebook, writeKernelspec } from '../../src/notebooks/tslab_kernel';

// The checks applied to a notebook executed by `jupyter nbconvert --execute` under tslab, on hand-made executed
// notebooks (the real kernel runs in CI through `npm run notebooks`).

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-tslab-kernel-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const svg = '<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>';

function executed(name: string, cells: object[], minPlots = 1): string {
  const file = path.join(root, `${name}.executed.ipynb`);
  fs.writeFileSync(file, JSON.stringify({ cells, metadata: { kernelspec: { name: 'tslab' }, dsmoe: { min_plots: minPlots } }, nbformat: 4, nbformat_minor: 5 }));
  return file;
}

const code = (outputs: object[], count: number | null = null) => ({ cell_type: 'code', execution_count: count, source: ['x'], outputs });

test('counts SVG plots and writes every display out', () => {
  const file = executed('good', [
    { cell_type: 'markdown', source: ['# title'] },
    code([{ output_type: 'stream', name: 'stdout', text: ['hello\n'] }]),
    code([{ output_type: 'display_data', data: { 'text/html': [svg] }, metadata: {} }], 2),
    code([{ output_type: 'display_data', data: { 'text/markdown': '| a |' }, metadata: {} }, { output_type: 'display_data', data: { 'image/svg+xml': svg }, metadata: {} }], 3),
  ], 2);
  const displays = path.join(root, 'displays');
  expect(checkExecutedNotebook(file, displays)).toBe(2);
  expect(fs.readdirSync(displays).sort()).toEqual(['good-01.html', 'good-02.md', 'good-03.svg']);
  expect(fs.readFileSync(path.join(displays, 'good-01.html'), 'utf8')).toBe(svg);
});

test('a failed or an uncompiled cell, and too few plots, are errors naming the cell', () => {
  const plot = code([{ output_type: 'display_data', data: { 'text/html': svg } }]);
  expect(() => checkExecutedNotebook(executed('error', [plot, code([{ output_type: 'error', ename: 'TypeError', evalue: 'x is not a function', traceback: [] }])]))).toThrow(
    'error: code cell 2 failed: TypeError: x is not a function',
  );
  expect(() => checkExecutedNotebook(executed('compile', [code([{ output_type: 'stream', name: 'stderr', text: "6:31 - File '/x/src/a.ts' is not under 'rootDir'" }])]))).toThrow(
    /compile: code cell 1 did not compile: 6:31 - File/,
  );
  expect(() => checkExecutedNotebook(executed('few', [code([{ output_type: 'display_data', data: { 'text/html': '<p>no plot</p>' } }])], 1))).toThrow(
    'few: displayed 0 plot(s), expected at least 1',
  );
});

test('the kernelspec starts tslab as `tslab install` registers it', () => {
  const dir = writeKernelspec('/opt/bin/tslab');
  try {
    const spec = JSON.parse(fs.readFileSync(path.join(dir, 'kernels', 'tslab', 'kernel.json'), 'utf8'));
    expect(spec).toEqual({ argv: ['/opt/bin/tslab', 'kernel', '--config-path', '{connection_file}'], display_name: 'TypeScript', language: 'typescript' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
