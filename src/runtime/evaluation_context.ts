import type { RoutingOverride, RoutingStats } from './native';

export type { RoutingOverride, RoutingStats };

/**
 * The slice of the native runtime's `NativeContext` (docs/design.md §5) that scoring and timing loops drive: the
 * report's throughput and quality, and the converter's quality–cost sweep. Kept as an interface so those loops are
 * plain code over it: the callers pass the runtime's context, tests may pass a scripted one.
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
