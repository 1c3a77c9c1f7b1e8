import type { TopLevelSpec } from 'vega-lite';
import type { ExpertDtypeRow } from '../report_json';
import { chartFrame } from './render_svg';

/** Held-out perplexity against weight bytes read per token, one labelled point per expert dtype (scored rows only). */
export function expertDtypeChart(rows: readonly ExpertDtypeRow[], title: string): TopLevelSpec {
  const values = rows
    .filter((r) => r.quality)
    .map((r) => ({ dtype: r.expert_dtype, kib_per_token: r.weight_bytes_per_token / 1024, perplexity: r.quality!.perplexity }));
  const x = { field: 'kib_per_token', type: 'quantitative' as const, title: 'Weight bytes read per token (KiB)', scale: { zero: false } };
  const y = { field: 'perplexity', type: 'quantitative' as const, title: 'Held-out perplexity', scale: { zero: false } };
  return {
    ...chartFrame(title),
    data: { values },
    layer: [
      { mark: { type: 'line', point: true }, encoding: { x, y, order: { field: 'kib_per_token', type: 'quantitative' } } },
      { mark: { type: 'text', dx: 8, dy: -8, align: 'left', fontSize: 11 }, encoding: { x, y, text: { field: 'dtype' } } },
    ],
  };
}
