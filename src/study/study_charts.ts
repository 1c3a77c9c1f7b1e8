/**
 * The study's Vega-Lite charts (rendered to SVG by the report's renderSvg): loss against tokens per parameter, one
 * line per active-parameter level (Nakamura et al.'s figure), loss against active FLOPs per token, and probe
 * accuracy against both, one panel per probe.
 */
import type { TopLevelSpec } from 'vega-lite';
import { CHART_CONFIG, SCHEMA, chartFrame } from '../report/charts/render_svg';

export interface ChartRow {
  point: string;
  series: string; // the colour: an active-parameter level or a routing
  x: number;
  y: number;
  panel?: string; // probe name (accuracy charts)
}

export function studyChart(rows: readonly ChartRow[], axes: { x: string; y: string; series: string; title: string; logX: boolean }): TopLevelSpec {
  const encoding = {
    x: { field: 'x', type: 'quantitative' as const, title: axes.x, scale: axes.logX ? { type: 'log' as const } : { zero: false } },
    y: { field: 'y', type: 'quantitative' as const, title: axes.y, scale: { zero: false } },
    color: { field: 'series', type: 'nominal' as const, title: axes.series, legend: { labelLimit: 400 } },
    order: { field: 'x', type: 'quantitative' as const },
    tooltip: [{ field: 'point' }, { field: 'x', format: '.4g' }, { field: 'y', format: '.4f' }],
  };
  const single = { mark: { type: 'line' as const, point: true }, encoding };
  if (rows.some((row) => row.panel !== undefined)) {
    return {
      $schema: SCHEMA,
      title: axes.title,
      config: CHART_CONFIG,
      data: { values: rows as ChartRow[] },
      facet: { field: 'panel', type: 'nominal', title: null },
      columns: 3,
      spec: { width: 240, height: 200, ...single },
      resolve: { scale: { y: 'independent' } },
    } as TopLevelSpec;
  }
  return { ...chartFrame(axes.title), data: { values: rows as ChartRow[] }, ...single } as TopLevelSpec;
}
