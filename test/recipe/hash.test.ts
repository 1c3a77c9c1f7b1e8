import * as fs from 'fs';
import * as path from 'path';
import { loadRecipe, recipeHash } from '../../src/recipe';

// The hash of every shipped recipe as computed before any field was added after it (fixture written by the hash
// code of e4b5ae5). Checkpoints record this hash and resume/eval refuse a mismatch, so a new recipe field must leave
// these values unchanged (give it a default that is left out of the hash).
const pinned = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'recipe_hashes.json'), 'utf8')) as Record<string, string>;
const recipesDir = path.join(__dirname, '..', '..', 'recipes');

describe('recipe hashes stay fixed for existing recipes', () => {
  test('the fixture covers every recipe in recipes/', () => {
    const files = fs.readdirSync(recipesDir).filter((f) => /\.ya?ml$/.test(f)).sort();
    expect(Object.keys(pinned).sort()).toEqual(files);
  });

  test.each(Object.entries(pinned))('%s hashes as before', (file, hash) => {
    expect(recipeHash(loadRecipe(path.join(recipesDir, file)))).toBe(hash);
  });
});
