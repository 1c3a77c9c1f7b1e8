import type { Analysis, BandwidthFigure, ComputeFigure, ModeCost, SpeedupFigure } from './analysis';
import type { MachineReport } from './machine';
import type { ThroughputRow } from './throughput';
import type { Quality } from '../runtime/quality';
import type { QualityCostPoint } from '../runtime/quality_cost_sweep';
import type { ExpertLoadCell } from './charts/expert_load_chart';
import type { PeerReport } from './peer_pytorch';
import type { LlamaCppColumn } from './llama_cpp_column';
import type { ReportMode } from './engine';
import type { ModelConfig } from '../model/config';
import type { MatrixDtype } from '../plan/plan_format';

/**
 * `report.json` (SPEC §7 plus `ideal_speedup`, `measured_speedup`, `memory_bandwidth_gbs`). Every figure in
 * report.md is read from this object, so the two cannot disagree.
 */
export interface ReportJson {
  format: 'dsmoe-report';
  version: 1;
  created: string;
  kind: 'trained' | 'random-init';
  sources: { dense: string | null; sparse: string; shape: string | null };
  model: {
    config: ModelConfig;
    dtype: string;
    /** plan.json `dtypes` when the experts or attention are stored otherwise (absent: every class at `dtype`). */
    dtypes?: { experts: string; attention: string };
    strategy: { name: string; k: number | null; epsilon: number | null };
    experts_per_token: number[]; // per layer, the plan's k (threshold: its calibrated sizing k)
    /** MoA plans: attention experts per token per layer as the cost assumes them (all: K; threshold: the calibrated mean). */
    attention_experts_per_token?: number[];
    layers_note: string | null; // set when --layers shrank a paper shape
  };
  machine: MachineReport;
  settings: {
    batches: number[]; prompt_len: number; decode_steps: number; repeats: number; warmup_rounds: number; threads: number;
    /** How the plan's weights were held in memory (--residency), when the runtime says. */
    residency?: string;
  };
  /** Per mode: dense = the same plan with every kept expert (routing override), sparse = the plan's own routing. */
  quality: Record<ReportMode, Quality> | null;
  /** The dense checkpoint through the JS reference forward on a subset of windows, with the plan's dense mode on the same subset. */
  reference_check: { windows: number; tokens: number; reference_loss: number; plan_dense_loss: number; plan_sparse_loss: number } | null;
  params: Record<ReportMode, { total: number; active_per_token: number }>;
  /** Per mode, with `split`: active params, MACs and weight bytes per token of attention (MoA: its experts), MLP and the rest. */
  cost: Record<ReportMode, ModeCost>;
  throughput: ThroughputRow[];
  ideal_speedup: number;
  measured_speedup: number;
  speedup_batch: number;
  speedup_efficiency: number;
  speedups: SpeedupFigure[];
  memory_bandwidth_gbs: number;
  peak_gflops: number;
  bandwidth: BandwidthFigure[];
  compute: ComputeFigure[];
  roofline: Analysis['roofline'];
  quality_cost: QualityCostPoint[];
  /**
   * The plan with its routed experts at each dtype of `--expert-dtypes` (the plan's own first): bytes per token,
   * held-out quality (trained reports) and batch-1 decode speed. Absent in reports written before these rows.
   */
  expert_dtypes?: ExpertDtypeRow[];
  expert_load: { source: string; cells: ExpertLoadCell[] } | null;
  peer: PeerReport;
  /** llama.cpp running the same plan exported to GGUF; `available: false` with the reason when not run. */
  llama_cpp: LlamaCppColumn;
  figures: string[];
  notes: string[];
  /** What `--budget` chose and why (random-init shape reports); null when every setting was given. */
  budget: BudgetReport | null;
}

/** `dsmoe report --budget MIN`: the work chosen to fit the time, from the estimates it was chosen by. */
export interface BudgetReport {
  minutes: number;
  /** Estimate of the whole report when the batches and repeats were chosen, and the time it took. */
  estimated_ms: number;
  elapsed_ms: number;
  /** False when even the least work was estimated to overrun. */
  fits: boolean;
  layers: { chosen: number; full: number; given: boolean; estimated_write_ms: number } | null;
  batches: { chosen: number[]; given: boolean };
  repeats: { chosen: number; given: boolean };
  /** Rates fitted to the batch-1 calibration calls on the opened plan. */
  calibration: { calls: number; effective_bandwidth_gbs: number | null; effective_gflops: number | null };
}

/** One row of the quality–cost table per expert bit-width (src/report/expert_dtype_rows.ts measures it). */
export interface ExpertDtypeRow {
  expert_dtype: MatrixDtype;
  /** The plan as converted, or a copy with its experts re-encoded from the plan's values. */
  source: 'plan' | 're-encoded';
  bits_per_weight: number;
  /** Weights a token reads with the plan's routing (plan.cost), and every kept expert's share of the file. */
  weight_bytes_per_token: number;
  expert_bytes: number;
  /** Held-out quality with the plan's routing; null in random-init reports. */
  quality: Pick<Quality, 'loss' | 'perplexity' | 'bits_per_byte' | 'tokens'> | null;
  /** Perplexity relative to the first row (the plan's dtype): 0.01 = 1% higher. */
  perplexity_change: number | null;
  /** Batch-1 decode with the plan's routing: median call time, its tokens/s, and the weight bytes that moves per second. */
  decode_p50_ms: number;
  decode_tokens_per_s: number;
  decode_gbs: number;
  /** decode_gbs over the measured triad bandwidth. */
  fraction_of_bandwidth: number;
}

/** Fields a consumer may rely on; tests check them. */
export const REQUIRED_REPORT_FIELDS = [
  'machine',
  'quality',
  'throughput',
  'params',
  'ideal_speedup',
  'measured_speedup',
  'memory_bandwidth_gbs',
] as const;
