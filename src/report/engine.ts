/**
 * The slice of the native runtime the report drives (docs/design.md §5, `NativeContext`). Kept as an interface so
 * the benchmark and quality loops are plain code over it: the CLI passes the runtime's context, tests may pass a
 * scripted one.
 */
export interface RoutingOverride {
  mode: 'dense' | 'topk' | 'threshold';
  k?: number;
  epsilon?: number;
}

export interface RoutingStats {
  tokens: number;
  expertCounts: Int32Array[]; // per layer [E]
  activeExperts: number;
}

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
