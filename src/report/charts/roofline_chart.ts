import type { TopLevelSpec } from 'vega-lite';
import { chartFrame } from './render_svg';

/** One measured point of the roofline: a (mode, phase, batch) run's arithmetic intensity and achieved rate. */
export interface RooflinePoint {
  mode: string;
  phase: string;
  batch: number;
  flops_per_byte: number; // weight FLOPs per byte of weights read
  achieved_gflops: number;
}

/**
 * The roofline against the machine's limits measured in the same run: attainable GFLOP/s = min(peak, intensity ×
 * bandwidth), with the measured points on top. Points near the sloped roof are bandwidth-bound, near the flat roof
 * compute-bound; the gap below the roof is what the kernels leave on the table.
 */
export function rooflineChart(points: readonly RooflinePoint[], bandwidthGBs: number, peakGflops: number, title: string): TopLevelSpec {
  const intensities = points.map((p) => p.flops_per_byte).filter((x) => x > 0 && Number.isFinite(x));
  const ridge = peakGflops / bandwidthGBs;
  const lo = Math.min(ridge, ...intensities) / 4;
  const hi = Math.max(ridge, ...intensities) * 4;
  const roof = Array.from({ length: 41 }, (_, i) => {
    const x = lo * Math.pow(hi / lo, i / 40);
    return { flops_per_byte: x, gflops: Math.min(peakGflops, x * bandwidthGBs) };
  });
  return {
    ...chartFrame(title),
    layer: [
      {
        data: { values: roof },
        mark: { type: 'line', color: 'black' },
        encoding: {
          x: { field: 'flops_per_byte', type: 'quantitative', title: 'Arithmetic intensity (FLOP per weight byte)', scale: { type: 'log' } },
          y: { field: 'gflops', type: 'quantitative', title: 'GFLOP/s', scale: { type: 'log' } },
        },
      },
      {
        data: { values: points.filter((p) => p.flops_per_byte > 0 && p.achieved_gflops > 0) },
        mark: { type: 'point', filled: true, size: 60 },
        encoding: {
          x: { field: 'flops_per_byte', type: 'quantitative' },
          y: { field: 'achieved_gflops', type: 'quantitative' },
          color: { field: 'mode', type: 'nominal', title: 'Mode', sort: ['dense', 'sparse'] },
          shape: { field: 'phase', type: 'nominal', title: 'Phase' },
          tooltip: [{ field: 'batch' }, { field: 'achieved_gflops', format: '.1f' }],
        },
      },
      {
        data: {
          values: [
            { x: hi, y: peakGflops, label: `peak ${peakGflops.toFixed(0)} GFLOP/s` },
            { x: lo * 1.5, y: lo * 1.5 * bandwidthGBs, label: `${bandwidthGBs.toFixed(1)} GB/s` },
          ],
        },
        mark: { type: 'text', align: 'right', dy: -8, fontSize: 11 },
        encoding: {
          x: { field: 'x', type: 'quantitative' },
          y: { field: 'y', type: 'quantitative' },
          text: { field: 'label' },
        },
      },
    ],
  };
}
