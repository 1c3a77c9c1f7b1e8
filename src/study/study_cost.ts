/**
 * A recipe's size and compute, from the plan cost model (src/plan/cost.ts: 2 FLOPs per multiply-add of every
 * matrix-vector product, parameters a token touches with the LM head in and the embedding lookup out):
 *
 * - `total_params`: every stored parameter (all experts).
 * - `active_params` / `active_flops_per_token`: one token's forward with k experts per layer, k being the k the
 *   model is meant to be served with — routing.top_k for an SMoE recipe, model.num_experts_per_tok for DS-MoE
 *   (the converter may pick another k; the plan's own figures are recorded beside these after conversion).
 * - `training_flops`: 3 × (forward FLOPs per token as trained) × tokens, the usual forward + backward estimate.
 *   DS-MoE trains densely, so its forward runs all E experts; SMoE runs top_k. Attention over the context is added
 *   at the mean context of a training sequence, (seq_len + 1) / 2 positions.
 * - `tpp`: training tokens per total parameter (Nakamura et al.'s tokens per parameter).
 */
import { planCost } from '../plan/cost';
import type { Recipe } from '../recipe';

export interface RecipeCost {
  total_params: number;
  active_params: number;
  active_flops_per_token: number;
  training_flops: number;
  tokens: number;
  tpp: number;
  served_k: number;
}

export function recipeCost(recipe: Recipe): RecipeCost {
  const config = recipe.model;
  const layers = config.num_hidden_layers;
  const servedK = recipe.routing.mode === 'topk' ? recipe.routing.top_k : config.num_experts_per_tok;
  const trainedK = recipe.routing.mode === 'topk' ? recipe.routing.top_k : config.num_experts;
  const all = new Array<number>(layers).fill(config.num_experts);
  const served = planCost(config, 'f32', all, new Array<number>(layers).fill(servedK));
  const trained = planCost(config, 'f32', all, new Array<number>(layers).fill(trainedK));
  const seqLen = recipe.data.seq_len;
  const trainedForward = trained.active_flops_per_token + (trained.attention_flops_per_context_token ?? 0) * ((seqLen + 1) / 2);
  const tokens = recipe.train.max_steps * recipe.train.batch_size * recipe.train.grad_accum * seqLen;
  return {
    total_params: served.total_params,
    active_params: served.active_params_per_token,
    active_flops_per_token: served.active_flops_per_token,
    training_flops: 3 * trainedForward * tokens,
    tokens,
    tpp: tokens / served.total_params,
    served_k: servedK,
  };
}
