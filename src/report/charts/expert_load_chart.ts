import type { TopLevelSpec } from 'vega-lite';
import { CHART_CONFIG, SCHEMA } from './render_svg';

/** Share of tokens that select expert e in layer l. */
export interface ExpertLoadCell {
  layer: number;
  expert: number;
  share: number;
}

/** Per-layer expert load as a heatmap: balanced routing is an even colour, dead or hot experts stand out. */
export function expertLoadChart(cells: readonly ExpertLoadCell[], title: string): TopLevelSpec {
  return {
    $schema: SCHEMA,
    title,
    config: CHART_CONFIG,
    data: { values: [...cells] },
    width: { step: Math.max(8, Math.min(28, Math.floor(560 / Math.max(1, new Set(cells.map((c) => c.expert)).size)))) },
    height: { step: Math.max(8, Math.min(28, Math.floor(420 / Math.max(1, new Set(cells.map((c) => c.layer)).size)))) },
    mark: 'rect',
    encoding: {
      x: { field: 'expert', type: 'ordinal', title: 'Expert' },
      y: { field: 'layer', type: 'ordinal', title: 'Layer' },
      color: { field: 'share', type: 'quantitative', title: 'Share of tokens', scale: { scheme: 'viridis', domainMin: 0 } },
      tooltip: [{ field: 'layer' }, { field: 'expert' }, { field: 'share', format: '.3f' }],
    },
  };
}
