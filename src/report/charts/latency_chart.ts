import type { TopLevelSpec } from 'vega-lite';
import type { ThroughputRow } from '../throughput';
import { CHART_CONFIG, SCHEMA } from './render_svg';

/**
 * Call latency (p50 solid, p95 dashed) against batch size, one panel per phase: prefill latency is the time to
 * first token of b prompts, decode latency the time of one step of b tokens.
 */
export function latencyChart(rows: readonly ThroughputRow[], title: string): TopLevelSpec {
  const batches = [...new Set(rows.map((r) => r.batch))].sort((a, b) => a - b);
  const values = rows.flatMap((r) => [
    { mode: r.mode, phase: r.phase, batch: r.batch, statistic: 'p50', ms: r.p50_ms },
    { mode: r.mode, phase: r.phase, batch: r.batch, statistic: 'p95', ms: r.p95_ms },
  ]);
  return {
    $schema: SCHEMA,
    title,
    config: CHART_CONFIG,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      column: { field: 'phase', type: 'nominal', title: 'Phase', sort: ['prefill', 'decode'] },
      x: { field: 'batch', type: 'quantitative', title: 'Batch size', scale: { type: 'log', base: 2 }, axis: { values: batches, format: 'd' } },
      y: { field: 'ms', type: 'quantitative', title: 'Latency per call (ms)', scale: { type: 'log' } },
      color: { field: 'mode', type: 'nominal', title: 'Mode', sort: ['dense', 'sparse'] },
      strokeDash: { field: 'statistic', type: 'nominal', title: 'Percentile', legend: { symbolType: 'stroke', symbolStrokeWidth: 2 } },
      detail: { field: 'statistic', type: 'nominal' },
    },
    resolve: { scale: { y: 'independent' } },
  };
}
