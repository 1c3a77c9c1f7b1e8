/** `dsmoe train` refuses a model that cannot fit before allocating anything, with one line. */
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import yargs from 'yargs';
import { trainCommand } from '../../../src/cli/commands/train';
import { UserError } from '../../../src/errors';
import { removeTempDirs, tempDir } from '../../helpers/dense_fixtures';
import { writeTestRecipe } from '../../helpers/recipe_fixtures';

afterAll(removeTempDirs);

test('hidden_size 1048576 ends in one line naming the memory it needs and what the machine has', async () => {
  const root = tempDir('train-huge');
  const file = writeTestRecipe(root, 'huge');
  const recipe = YAML.parse(fs.readFileSync(file, 'utf8'));
  recipe.model.hidden_size = 1048576;
  fs.writeFileSync(file, YAML.stringify(recipe));
  const out = path.join(root, 'dense');
  const log = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  let error: unknown;
  try {
    await yargs(['train', file, '--out', out, '--backend', 'cpu', '--kernels', 'tfjs'])
      .command(trainCommand as never)
      .strict()
      .fail((message, e) => {
        throw e ?? new Error(message);
      })
      .parseAsync();
  } catch (e) {
    error = e;
  } finally {
    log.mockRestore();
  }
  expect(error).toBeInstanceOf(UserError);
  const message = (error as Error).message;
  expect(message).not.toContain('\n');
  expect(message).toMatch(/^training .*huge\.yaml needs ≈ [\d.]+ [TP]iB of memory \(weights [\d.]+ TiB, gradients [\d.]+ TiB, AdamW moments [\d.]+ TiB, activations at batch 16 × 32 tokens [\d.]+ [GT]iB\); this machine has [\d.]+ [GMT]iB available of [\d.]+ [GMT]iB/);
  expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(false);
});
