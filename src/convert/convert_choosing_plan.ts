/**
 * `dsmoe convert` without --strategy/--k/--epsilon: the converter picks the plan. It writes the folder once with
 * every expert (top-E, the dense model), scores the quality–cost sweep on the calibration tokens with the native
 * runtime (src/convert/plan_sweep.ts), picks the cheapest routing within the loss bound (choose_plan.ts), and
 * converts again with that routing, so the final folder is exactly what a forced --strategy would have written,
 * plus the sweep in plan.json's `choice`.
 */
import { UserError } from '../errors';
import type { DenseCheckpoint } from '../checkpoint/dense';
import type { PlanChoice } from '../plan/plan_format';
import { attentionDecisions, convertCheckpoint, DEFAULT_EPSILON, type ConvertOptions, type ConvertResult } from './convert_checkpoint';
import { choosePlan } from './choose_plan';
import { sweepPlanChoices } from './plan_sweep';

export interface ChoosingOptions extends Omit<ConvertOptions, 'strategy' | 'k' | 'epsilon' | 'layerK' | 'choice'> {
  /** Relative bound on the calibration loss: chosen loss ≤ dense × (1 + maxLossIncrease). */
  maxLossIncrease: number;
  /** Instead, a relative bound on the calibration perplexity: chosen loss ≤ dense + ln(1 + maxPerplexityIncrease). */
  maxPerplexityIncrease?: number;
  /** ε values of the threshold and threshold-topk points. */
  epsilons: readonly number[];
}

export async function convertChoosingPlan(dense: DenseCheckpoint, options: ChoosingOptions): Promise<ConvertResult & { choice: PlanChoice }> {
  attentionDecisions(dense.config, options.attention, dense.dir); // the flags checked before the sweep
  const log = options.log ?? (() => undefined);
  const windows = options.calibWindows.filter((w) => w.length >= 2);
  if (windows.length === 0) {
    throw new UserError('choosing the plan needs calibration tokens (--calib-tokens > 0); or force one with --strategy, --k or --epsilon');
  }
  if (!(options.maxLossIncrease >= 0) || !Number.isFinite(options.maxLossIncrease)) {
    throw new UserError(`--max-loss-increase must be a finite share ≥ 0 (0.005 = 0.5%), got ${options.maxLossIncrease}`);
  }
  const perplexity = options.maxPerplexityIncrease;
  if (perplexity !== undefined && !(perplexity >= 0 && Number.isFinite(perplexity))) {
    throw new UserError(`--max-perplexity-increase must be a finite share ≥ 0 (0.005 = 0.5%), got ${perplexity}`);
  }
  const E = dense.config.num_experts;
  log(`choosing the plan: every expert written first, then the quality–cost sweep on ${windows.length} calibration windows`);
  await convertCheckpoint(dense, { ...options, strategy: 'topk', k: E, epsilon: DEFAULT_EPSILON, calibWindows: [], pruneBelow: undefined, log: () => undefined });
  const sweep = await sweepPlanChoices(options.outDir, windows, { epsilons: options.epsilons, threads: options.threads, log });
  const choice = choosePlan(sweep.points, sweep.denseLoss, perplexity === undefined ? options.maxLossIncrease : { perplexity }, sweep.tokens);
  const c = choice.chosen;
  const name = c.strategy === 'topk' ? `top-${c.k}` : `${c.strategy} ε=${c.epsilon}${c.layer_k ? ` (k ${c.layer_k.join(',')})` : ''}`;
  log(
    `chose ${name}: loss ${c.loss.toFixed(4)} vs dense ${choice.dense_loss.toFixed(4)} (bound ${choice.loss_bound.toFixed(4)}), ` +
      `${c.mean_active_experts.toFixed(2)} of ${E} experts per token`,
  );
  const result = await convertCheckpoint(dense, {
    ...options,
    strategy: c.strategy,
    k: c.strategy === 'topk' ? (c.k ?? E) : E,
    epsilon: c.epsilon ?? DEFAULT_EPSILON,
    layerK: c.layer_k ?? undefined,
    choice,
  });
  return { ...result, choice };
}
