import type { RoutingOverride, RoutingStats } from '../runtime/native';

export type { RoutingOverride, RoutingStats };

/**
 * The slice of the native runtime's `NativeContext` (docs/design.md §5) the report drives. Kept as an interface so
 * the benchmark and quality loops are plain code over it: the CLI passes the runtime's context, tests may pass a
 * scripted one.
 */
export interface EvaluationContext {
  /** Token i belongs to slots[i] at positions[i]; returns logits [outputRows.length, V]. */
  evaluate(
    tokens: Int32Array,
    slots: Int32Array,
    positions: Int32Array,
    outputRows: Int32Array,
    routing?: RoutingOverride,
  ): Promise<Float32Array>;
  clearSlot(slot: number): void;
  routingStats(): RoutingStats;
  resetStats(): void;
}

/** The two modes the report compares: the plan as converted, and every kept expert (the dense baseline). */
export type ReportMode = 'dense' | 'sparse';

export function routingFor(mode: ReportMode): RoutingOverride | undefined {
  return mode === 'dense' ? { mode: 'dense' } : undefined;
}
