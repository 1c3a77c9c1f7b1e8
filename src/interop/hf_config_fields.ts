/**
 * Reading config.json fields shared by every imported architecture, with each architecture's own defaults, and
 * the checks for features the reference forward and runtime do not have (RoPE scaling, other activations,
 * a head_dim that is not hidden_size / num_attention_heads, sliding windows).
 */
import type { ModelConfig } from '../model/config';

export type HfConfig = Record<string, unknown>;

export interface ArchitectureDefaults {
  rope_theta: number;
  rms_norm_eps: number;
  num_experts_per_tok: number;
  max_position_embeddings: number;
}

export function numberField(hf: HfConfig, key: string, fallback?: number): number {
  const value = hf[key];
  return typeof value === 'number' ? value : (fallback as number);
}

/** The decoder's size fields, named alike in every architecture's config.json (kv heads default to the query heads). */
export function decoderShape(hf: HfConfig): Pick<ModelConfig, 'vocab_size' | 'hidden_size' | 'num_hidden_layers' | 'num_attention_heads' | 'num_key_value_heads'> {
  return {
    vocab_size: numberField(hf, 'vocab_size'),
    hidden_size: numberField(hf, 'hidden_size'),
    num_hidden_layers: numberField(hf, 'num_hidden_layers'),
    num_attention_heads: numberField(hf, 'num_attention_heads'),
    num_key_value_heads: numberField(hf, 'num_key_value_heads', numberField(hf, 'num_attention_heads')),
  };
}

/** rope_theta: transformers 4 writes it at the top level, transformers 5 inside `rope_parameters`. */
export function ropeTheta(hf: HfConfig, fallback: number): number {
  const parameters = hf.rope_parameters as Record<string, unknown> | undefined;
  if (typeof hf.rope_theta === 'number') return hf.rope_theta;
  if (parameters && typeof parameters.rope_theta === 'number') return parameters.rope_theta;
  return fallback;
}

/** Problems every architecture shares: only plain RoPE, SiLU experts and head_dim = hidden_size / heads. */
export function commonProblems(hf: HfConfig): string[] {
  const problems: string[] = [];
  const scaling = (hf.rope_scaling ?? null) as Record<string, unknown> | null;
  const parameters = (hf.rope_parameters ?? null) as Record<string, unknown> | null;
  const ropeType = (scaling?.rope_type ?? scaling?.type ?? parameters?.rope_type ?? 'default') as string;
  if (ropeType !== 'default') problems.push(`RoPE scaling "${ropeType}" (only plain RoPE is implemented)`);
  const act = hf.hidden_act ?? 'silu';
  if (act !== 'silu') problems.push(`hidden_act "${String(act)}" (experts are SwiGLU with SiLU)`);
  const heads = numberField(hf, 'num_attention_heads');
  const hidden = numberField(hf, 'hidden_size');
  if (typeof hf.head_dim === 'number' && heads > 0 && hf.head_dim !== hidden / heads) {
    problems.push(`head_dim ${hf.head_dim} differs from hidden_size / num_attention_heads = ${hidden / heads}`);
  }
  return problems;
}

/**
 * A sliding window only matters for sequences longer than it: dsmoe caps max_position_embeddings at the window so
 * that every context it runs is one where full causal attention equals windowed attention.
 */
export function capAtWindow(config: ModelConfig, window: unknown, notes: string[]): void {
  if (typeof window === 'number' && window > 0 && window < config.max_position_embeddings) {
    notes.push(`sliding window ${window} < max_position_embeddings ${config.max_position_embeddings}: contexts capped at ${window}`);
    config.max_position_embeddings = window;
  }
}
