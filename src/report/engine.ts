import type { EvaluationContext, RoutingOverride, RoutingStats } from '../runtime/evaluation_context';

export type { EvaluationContext, RoutingOverride, RoutingStats };

/** The two modes the report compares: the plan as converted, and every kept expert (the dense baseline). */
export type ReportMode = 'dense' | 'sparse';

export function routingFor(mode: ReportMode): RoutingOverride | undefined {
  return mode === 'dense' ? { mode: 'dense' } : undefined;
}
