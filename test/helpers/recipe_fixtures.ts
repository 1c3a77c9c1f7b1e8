/** A small recipe with its own corpus file, and a dense folder that records it as the trainer does. */
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { loadCorpusText, packageRoot } from '../../src/data';
import { loadRecipe, recipeHash } from '../../src/recipe';

let corpusSlice: string | null = null;

/**
 * recipes/<base>.yaml (default tiny) with `name`, seq_len 32, eval_tokens 512 and, as corpus, corpus.txt beside the recipe (the
 * first 64 kB of the embedded corpus: 64 split blocks of 1 kB, so the split is rebuilt in milliseconds).
 * Writes DIR/recipes/<name>.yaml and DIR/recipes/corpus.txt; returns the recipe file.
 */
export function writeTestRecipe(dir: string, name: string, base = 'tiny'): string {
  corpusSlice ??= loadCorpusText({ corpus: 'default', text_field: 'text' }).slice(0, 65_536);
  const folder = path.join(dir, 'recipes');
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(path.join(folder, 'corpus.txt'), corpusSlice);
  const recipe = YAML.parse(fs.readFileSync(path.join(packageRoot(), 'recipes', `${base}.yaml`), 'utf8'));
  recipe.name = name;
  recipe.data = { ...recipe.data, corpus: 'corpus.txt', seq_len: 32 };
  recipe.train = { ...recipe.train, eval_tokens: 512 };
  const file = path.join(folder, `${name}.yaml`);
  fs.writeFileSync(file, YAML.stringify(recipe));
  return file;
}

/**
 * Records `recipeFile` in the dense folder's config.json the way the trainer does (dsmoe.recipe, recipe_file,
 * recipe_hash, seq_len); `fields` override or (as undefined) drop entries.
 */
export function recordRecipe(denseDir: string, recipeFile: string, fields: Record<string, unknown> = {}): void {
  const recipe = loadRecipe(recipeFile);
  const configFile = path.join(denseDir, 'config.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  config.dsmoe = {
    ...config.dsmoe,
    recipe: recipe.name,
    recipe_file: recipe.file,
    recipe_hash: recipeHash(recipe),
    seq_len: recipe.data.seq_len,
    ...fields,
  };
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
}
