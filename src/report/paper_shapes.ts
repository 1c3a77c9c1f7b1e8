import { readFileSync } from 'fs';
import { ModelConfig, configProblems, fromHfConfig } from '../model/config';
import { UserError } from '../errors';

/**
 * The DS-MoE paper's model shapes (Pan et al. 2024, SPEC §1), for speed benchmarks on randomly initialised plans.
 * The paper gives d_model, depth, expert count and expert width; the rest are our choices, written down here:
 * multi-head attention with head dimension 128 (d / 128 heads, KV heads = heads), a 32000-token vocabulary
 * (Llama's, the size the paper's Pile models use), untied embeddings, no shared expert. The `-moa` shapes add the
 * paper's mixture of attention heads (docs/design.md §12; recipes/ds-moe-*-moa.yaml): 1B 16 attention experts × 2
 * heads, 3B and 6B 8 × 4, over 32 heads of d / 32 (KV heads = heads), every attention expert kept.
 */
export interface PaperShape {
  name: string;
  config: ModelConfig;
  /** Share of the expert hidden units the paper reports active at inference (41% / 34% / 29%). */
  activeShare: number;
}

function paperConfig(hidden: number, layers: number, experts: number, expertWidth: number, heads = hidden / 128): ModelConfig {
  return {
    vocab_size: 32000,
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: heads,
    num_experts: experts,
    moe_intermediate_size: expertWidth,
    shared_expert_intermediate_size: 0,
    num_experts_per_tok: 2,
    max_position_embeddings: 4096,
    rope_theta: 10000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
  };
}

export const PAPER_SHAPES: Record<string, PaperShape> = {
  'ds-moe-1b': { name: 'ds-moe-1b', config: paperConfig(2048, 24, 32, 256), activeShare: 0.41 },
  'ds-moe-3b': { name: 'ds-moe-3b', config: paperConfig(3072, 28, 32, 384), activeShare: 0.34 },
  'ds-moe-6b': { name: 'ds-moe-6b', config: paperConfig(4096, 36, 32, 512), activeShare: 0.29 },
  'ds-moe-1b-moa': { name: 'ds-moe-1b-moa', config: moaConfig(paperConfig(2048, 24, 32, 256, 32), 16), activeShare: 0.41 },
  'ds-moe-3b-moa': { name: 'ds-moe-3b-moa', config: moaConfig(paperConfig(3072, 28, 32, 384, 32), 8), activeShare: 0.34 },
  'ds-moe-6b-moa': { name: 'ds-moe-6b-moa', config: moaConfig(paperConfig(4096, 36, 32, 512, 32), 8), activeShare: 0.29 },
};

/** A paper shape's heads as `experts` attention experts of H / experts heads each. */
function moaConfig(config: ModelConfig, experts: number): ModelConfig {
  return { ...config, attention_experts: experts, heads_per_attention_expert: config.num_attention_heads / experts };
}

/** Experts per token that give the paper's active share of the expert hidden units: round(share × E), at least 1. */
export function paperTopK(activeShare: number, numExperts: number): number {
  return Math.min(numExperts, Math.max(1, Math.round(activeShare * numExperts)));
}

/**
 * Resolves `--shape`: a paper shape name or a path to a Hugging Face `config.json`. A config file keeps its own
 * `num_experts_per_tok` as k unless `--k` overrides it; paper shapes use the paper's active share.
 */
export function resolveShape(shape: string, layers?: number): { name: string; config: ModelConfig; k: number } {
  let name: string;
  let config: ModelConfig;
  let k: number;
  const known = PAPER_SHAPES[shape.toLowerCase()];
  if (known) {
    name = known.name;
    config = { ...known.config };
    k = paperTopK(known.activeShare, config.num_experts);
  } else {
    let hf: Record<string, unknown>;
    try {
      hf = JSON.parse(readFileSync(shape, 'utf8'));
    } catch (error) {
      throw new UserError(
        `--shape ${shape}: neither one of ${Object.keys(PAPER_SHAPES).join(', ')} nor a readable config.json (${(error as Error).message})`,
      );
    }
    name = shape;
    config = fromHfConfig(hf);
    k = config.num_experts_per_tok;
  }
  if (layers !== undefined) {
    if (!Number.isInteger(layers) || layers < 1) throw new UserError(`--layers must be a positive integer, got ${layers}`);
    config.num_hidden_layers = layers;
  }
  config.num_experts_per_tok = k;
  const problems = configProblems(config);
  if (problems.length) throw new UserError(`--shape ${shape}: ${problems.join('; ')}`);
  return { name, config, k };
}
