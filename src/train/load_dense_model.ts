import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import type { DenseCheckpoint } from '../checkpoint/dense';
import { readDenseCheckpoint } from '../checkpoint/read_dense';
import { loadTokenizer, packageRoot, Tokenizer } from '../data';
import { fromCheckpointTensors } from '../model/checkpoint_layout';
import { MoEModel } from '../model/model';
import { disposeParams, paramsFromArrays } from '../model/params';
import { loadRecipe, Recipe, recipeHash } from '../recipe';

/** A dense checkpoint as a runnable tfjs model, with its tokenizer (for eval and sample). */
export interface LoadedDenseModel {
  checkpoint: DenseCheckpoint;
  model: MoEModel;
  tokenizer: Tokenizer;
  /** sequence length the model was trained on */
  seqLen: number;
  dispose(): void;
}

export function loadDenseModel(dir: string): LoadedDenseModel {
  const checkpoint = readDenseCheckpoint(dir);
  const tokenizer = loadTokenizer(dir);
  const config = checkpoint.config;
  if (tokenizer.vocabSize > config.vocab_size) {
    throw new UserError(`${dir}: tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${config.vocab_size}`);
  }
  const params = paramsFromArrays(config, fromCheckpointTensors(config, checkpoint.get));
  const model = new MoEModel(config, params);
  const dsmoe = (checkpoint.hfConfig.dsmoe ?? {}) as Record<string, unknown>;
  const seqLen = typeof dsmoe.seq_len === 'number' ? dsmoe.seq_len : config.max_position_embeddings;
  return {
    checkpoint,
    model,
    tokenizer,
    seqLen,
    dispose: () => {
      model.dispose();
      disposeParams(params);
    },
  };
}

/**
 * The recipe a checkpoint was trained with, for rebuilding its held-out split: the recorded recipe file, else
 * recipes/<name>.yaml (current folder, then the package); its hash must match the one recorded at training.
 */
export function trainingRecipe(checkpoint: DenseCheckpoint): Recipe {
  const dsmoe = (checkpoint.hfConfig.dsmoe ?? {}) as Record<string, unknown>;
  const configFile = path.join(checkpoint.dir, 'config.json');
  const name = typeof dsmoe.recipe === 'string' ? dsmoe.recipe : null;
  const candidates = [
    typeof dsmoe.recipe_file === 'string' ? dsmoe.recipe_file : null,
    ...(name ? ['.yaml', '.yml', '.json'].flatMap((ext) => [path.resolve('recipes', name + ext), path.join(packageRoot(), 'recipes', name + ext)]) : []),
  ].filter((f): f is string => f !== null);
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) throw new UserError(`${configFile}: the training recipe${name ? ` "${name}"` : ''} was not found; pass --text FILE to score a text instead`);
  const recipe = loadRecipe(file);
  if (typeof dsmoe.recipe_hash === 'string' && recipeHash(recipe) !== dsmoe.recipe_hash) {
    throw new UserError(`${file} changed since ${checkpoint.dir} was trained (recipe hash differs), so its held-out split may differ; pass --text FILE`);
  }
  return recipe;
}
