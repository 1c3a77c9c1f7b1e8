import type { EvaluationContext } from './engine';
import type { MachineProbe } from './machine';
import type { OurLayerTiming, PeerShape } from './peer_pytorch';
import type { OpProbe } from '../runtime/op_times';

/**
 * What the report needs from the runtime, as one injectable object: the CLI builds it from the native addon
 * (native_report_runtime.ts); tests can pass a scripted one and exercise the whole report without native code.
 */
export interface OpenedPlan {
  context: EvaluationContext;
  threads: number;
  dispose(): void;
  /** Per-op counters and the sampler: the throughput rows then say where the time goes (absent: not measured). */
  probe?: OpProbe;
  /** How the weights are held in memory (src/runtime/residency.ts), when the runtime says. */
  residency?: string;
}

export interface ReportRuntime {
  probe: MachineProbe;
  openPlan(dir: string, options: { threads?: number; slots: number; maxContext: number }): Promise<OpenedPlan>;
  /** Our time for one MoE layer of `shape` at each batch (tokens per call), for the PyTorch peer comparison. */
  timeMoeLayer?(shape: PeerShape, options: { dtypes: ('f32' | 'bf16')[]; batches: number[]; threads?: number; repeats: number }): Promise<OurLayerTiming[]>;
}
