import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { loadRecipe, recipeHash, type Recipe } from '../recipe';
import { loadTokenizer, packageRoot, prepareData } from '../data';

/**
 * The held-out tokens the report scores: the validation split of the recipe the dense model was trained with,
 * tokenized with the checkpoint's own tokenizer, cut into the same non-overlapping windows the trainer evaluates.
 * The dense folder's config.json records the recipe's name and hash (not its path), so the recipe is found by
 * `--recipe`, or as recipes/<name>.yaml in the working directory or the package, and checked against the hash.
 */

export interface HeldOut {
  windows: Int32Array[]; // each [seqLen + 1]: seqLen predictions
  tokenBytes: (id: number) => number;
  recipe: Recipe;
  recipeFile: string;
  hashMatches: boolean;
}

function findRecipe(denseDir: string, explicit: string | undefined): { file: string; hash: string | null } {
  const configFile = path.join(denseDir, 'config.json');
  let dsmoe: Record<string, unknown> = {};
  try {
    dsmoe = (JSON.parse(fs.readFileSync(configFile, 'utf8')).dsmoe ?? {}) as Record<string, unknown>;
  } catch (error) {
    throw new UserError(`${configFile}: cannot read (${(error as Error).message})`);
  }
  const hash = typeof dsmoe.recipe_hash === 'string' ? dsmoe.recipe_hash : null;
  if (explicit) return { file: explicit, hash };
  const name = typeof dsmoe.recipe === 'string' ? dsmoe.recipe : null;
  if (!name) throw new UserError(`${configFile}: no dsmoe.recipe recorded; pass --recipe FILE to say which data the model was trained on`);
  const candidates = [path.resolve('recipes', `${name}.yaml`), path.join(packageRoot(), 'recipes', `${name}.yaml`)];
  const found = candidates.find((file) => fs.existsSync(file));
  if (!found) throw new UserError(`recipe "${name}" (from ${configFile}) not found at ${candidates.join(' or ')}; pass --recipe FILE`);
  return { file: found, hash };
}

export function loadHeldOut(denseDir: string, options: { recipe?: string; maxTokens: number; seqLen?: number }): HeldOut {
  const { file, hash } = findRecipe(denseDir, options.recipe);
  const recipe = loadRecipe(file);
  const tokenizer = loadTokenizer(denseDir);
  const { dataset } = prepareData(recipe, { tokenizer });
  const seqLen = options.seqLen ?? recipe.data.seq_len;
  const held = dataset.validationWindows(options.maxTokens, seqLen);
  const windows: Int32Array[] = [];
  for (let i = 0; i < held.count; i++) {
    const window = new Int32Array(seqLen + 1); // inputs, then the last target
    window.set(held.inputs.subarray(i * seqLen, (i + 1) * seqLen));
    window[seqLen] = held.targets[(i + 1) * seqLen - 1];
    windows.push(window);
  }
  const byteLength = new Map<number, number>();
  const tokenBytes = (id: number): number => {
    let n = byteLength.get(id);
    // <|endoftext|> counts as one byte (a document boundary), as in the trainer's bits per byte.
    if (n === undefined) byteLength.set(id, (n = id === tokenizer.eosId ? 1 : tokenizer.tokenBytes(id).length));
    return n;
  };
  return { windows, tokenBytes, recipe, recipeFile: file, hashMatches: hash === null || hash === recipeHash(recipe) };
}
