import type { TopLevelSpec } from 'vega-lite';
import type { QualityCostPoint } from '../../runtime/quality_cost_sweep';
import { chartFrame } from './render_svg';

/** A labelled reference point on the quality–cost chart (the dense baseline, the converted plan). */
export interface QualityCostMarker {
  label: string;
  active_params: number;
  perplexity: number;
}

/** The paper's Figure 4: held-out perplexity against active parameters per token for top-k and threshold routing. */
export function qualityCostChart(points: readonly QualityCostPoint[], markers: readonly QualityCostMarker[], title: string): TopLevelSpec {
  const values = points.map((p) => ({
    sweep: p.sweep === 'topk' ? 'top-k' : 'threshold ε',
    active_params_m: p.active_params / 1e6,
    perplexity: p.perplexity,
    setting: p.sweep === 'topk' ? `k=${p.k}` : `ε=${p.epsilon}`,
  }));
  return {
    ...chartFrame(title),
    layer: [
      {
        data: { values },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'active_params_m', type: 'quantitative', title: 'Active parameters per token (millions)', scale: { zero: false } },
          y: { field: 'perplexity', type: 'quantitative', title: 'Held-out perplexity', scale: { zero: false } },
          color: { field: 'sweep', type: 'nominal', title: 'Routing' },
          order: { field: 'active_params_m', type: 'quantitative' },
          tooltip: [{ field: 'setting' }, { field: 'perplexity', format: '.3f' }],
        },
      },
      {
        data: { values: markers.map((m) => ({ ...m, active_params_m: m.active_params / 1e6 })) },
        mark: { type: 'point', shape: 'diamond', size: 120, filled: true, color: 'black' },
        encoding: {
          x: { field: 'active_params_m', type: 'quantitative' },
          y: { field: 'perplexity', type: 'quantitative' },
        },
      },
      {
        data: { values: markers.map((m) => ({ ...m, active_params_m: m.active_params / 1e6 })) },
        mark: { type: 'text', dx: 8, dy: -8, align: 'left', fontSize: 11 },
        encoding: {
          x: { field: 'active_params_m', type: 'quantitative' },
          y: { field: 'perplexity', type: 'quantitative' },
          text: { field: 'label' },
        },
      },
    ],
  };
}
