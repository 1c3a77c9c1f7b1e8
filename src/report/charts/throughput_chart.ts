import type { TopLevelSpec } from 'vega-lite';
import type { ThroughputRow } from '../throughput';
import { CHART_CONFIG, SCHEMA } from './render_svg';

/** Tokens per second against batch size, one panel per phase, dense and sparse as two lines (log–log). */
export function throughputChart(rows: readonly ThroughputRow[], title: string): TopLevelSpec {
  const batches = [...new Set(rows.map((r) => r.batch))].sort((a, b) => a - b);
  return {
    $schema: SCHEMA,
    title,
    config: CHART_CONFIG,
    data: { values: rows.map((r) => ({ mode: r.mode, phase: r.phase, batch: r.batch, tokens_per_s: r.tokens_per_s })) },
    mark: { type: 'line', point: true },
    encoding: {
      column: { field: 'phase', type: 'nominal', title: 'Phase', sort: ['prefill', 'decode'] },
      x: { field: 'batch', type: 'quantitative', title: 'Batch size', scale: { type: 'log', base: 2 }, axis: { values: batches, format: 'd' } },
      y: { field: 'tokens_per_s', type: 'quantitative', title: 'Tokens per second', scale: { type: 'log' } },
      color: { field: 'mode', type: 'nominal', title: 'Mode', sort: ['dense', 'sparse'] },
      tooltip: [{ field: 'tokens_per_s', type: 'quantitative', format: '.1f' }],
    },
    resolve: { scale: { y: 'independent' } },
  };
}
