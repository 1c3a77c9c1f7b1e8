/**
 * What dsmoe needs to know about one Hugging Face MoE architecture to import it: how its config.json maps onto
 * `ModelConfig`, which routing rule it uses, and where each tensor of the internal (Qwen2-MoE named) model lives in
 * its checkpoint. One file per architecture; `architectureFor` picks by `model_type`.
 */
import type { DenseModelType, RoutingRuleName } from '../checkpoint/dense';
import type { ModelConfig } from '../model/config';

export interface ImportedConfig {
  config: ModelConfig;
  routingRule: RoutingRuleName;
  /** OLMoE: RMSNorm over the whole q projection [H·hd] and k projection [KV·hd], before RoPE. */
  qkNorm: boolean;
  /** Whether the checkpoint stores q/k/v biases (absent ones read as zeros). */
  qkvBias: boolean;
  /** Notes on what was adapted (e.g. a sliding window folded into max_position_embeddings). */
  notes: string[];
  /** Features dsmoe cannot reproduce exactly; any entry refuses the import. */
  problems: string[];
}

/** Candidate checkpoint names of one expert matrix; the first present wins, else the fused form is read. */
export interface ExpertNames {
  gate: string[]; // [I, d]
  up: string[]; // [I, d]
  down: string[]; // [d, I]
}

export interface HfArchitecture {
  modelType: DenseModelType;
  readConfig(hf: Record<string, unknown>): ImportedConfig;
  /** Router [E, d], candidates in order. */
  router(l: number): string[];
  expert(l: number, e: number): ExpertNames;
  /** transformers 5's fused expert tensors: `${prefix}.gate_up_proj` [E, 2I, d] (gate rows first), `${prefix}.down_proj` [E, d, I]. */
  fusedExpertsPrefix(l: number): string[];
}
