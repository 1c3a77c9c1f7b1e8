import type { ModelConfig } from '../model/config';

/** A recipe after parsing, expression evaluation and validation: every field present, every number final. */
export interface Recipe {
  name: string; // run name; default output checkpoints/<name>/dense
  file: string; // absolute path of the recipe file
  seed: number; // data split, batch order, initialisation
  model: ModelConfig; // vocab_size filled from the tokenizer; with granularity G, the split shape (E·G experts of width I/G)
  /** model.granularity G as written; present only when not 1 (so recipes without it hash as before). */
  granularity?: number;
  routing: {
    mode: 'dense' | 'topk'; // dense = DS-MoE (all experts + MI loss); topk = SMoE baseline
    mi_alpha: number; // weight of the mutual-information loss (dense)
    top_k: number; // experts per token while training (topk)
    balance_alpha: number; // switch-transformer load-balancing loss weight (topk)
    /** topk: where the softmax sits; present only when 'after_topk' (default before_topk: softmax over all experts) */
    softmax?: 'before_topk' | 'after_topk';
    /** ST-MoE router z-loss weight; present only when > 0 */
    z_loss_alpha?: number;
    mi_alpha_attention?: number; // MI-loss weight of the attention routers; present only with attention experts
  };
  data: {
    corpus: 'default' | string[]; // absolute paths of .txt / .jsonl files
    text_field: string; // field read from .jsonl lines
    validation_fraction: number;
    seq_len: number;
  };
  tokenizer: { type: 'byte' | 'bpe'; vocab_size: number }; // byte: vocab_size 257
  train: {
    batch_size: number; // sequences per micro-batch
    grad_accum: number; // micro-batches per optimizer step
    max_steps: number; // optimizer steps
    lr: number; // peak learning rate
    min_lr: number; // end of the cosine decay
    warmup_steps: number;
    weight_decay: number;
    beta1: number;
    beta2: number;
    adam_eps: number;
    grad_clip: number; // global-norm clip; 0 = off
    log_every: number;
    eval_every: number;
    eval_tokens: number; // held-out tokens per evaluation
    checkpoint_every: number;
    /** the native kernels' products in bf16 (f32 sums and weights); present only when 'bf16' (default f32) */
    compute_dtype?: 'bf16';
  };
}
