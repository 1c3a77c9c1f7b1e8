import { UserError } from '../errors';
import type { DenseCheckpoint } from '../checkpoint/dense';
import { readDenseCheckpoint } from '../checkpoint/read_dense';
import { loadTokenizer, Tokenizer } from '../data';
import { fromCheckpointTensors } from '../model/checkpoint_layout';
import { MoEModel } from '../model/model';
import { disposeParams, paramsFromArrays } from '../model/params';

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
