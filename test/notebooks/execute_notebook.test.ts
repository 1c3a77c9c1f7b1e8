import path from 'node:path';
import { sourceFor } from '../../src/notebooks/execute_notebook';

const ROOT = path.resolve(__dirname, '..', '..');
const notebooks = path.join(ROOT, 'notebooks');

test('headless, imports of the built dist/ load the TypeScript source; anything else is left alone', () => {
  expect(sourceFor('../dist/cli/main', notebooks)).toBe(path.join(ROOT, 'src', 'cli', 'main'));
  expect(sourceFor('../dist/data', notebooks)).toBe(path.join(ROOT, 'src', 'data'));
  expect(sourceFor('yaml', notebooks)).toBe('yaml');
  expect(sourceFor('./helper', notebooks)).toBe('./helper');
  expect(sourceFor('../distant/x', notebooks)).toBe('../distant/x');
});
