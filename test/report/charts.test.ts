import { renderSvg } from '../../src/report/charts/render_svg';
import { throughputChart } from '../../src/report/charts/throughput_chart';
import { latencyChart } from '../../src/report/charts/latency_chart';
import { rooflineChart } from '../../src/report/charts/roofline_chart';
import { qualityCostChart } from '../../src/report/charts/quality_cost_chart';
import { expertLoadChart } from '../../src/report/charts/expert_load_chart';
import type { ThroughputRow } from '../../src/report/throughput';

function row(mode: 'dense' | 'sparse', phase: 'prefill' | 'decode', batch: number, tokensPerS: number): ThroughputRow {
  const ms = (batch / tokensPerS) * 1000;
  return { mode, phase, batch, tokens_per_s: tokensPerS, p50_ms: ms, p95_ms: ms * 1.2, mean_ms: ms, samples: 3, repeat_mean_ms: [ms] };
}

const rows: ThroughputRow[] = [
  row('dense', 'prefill', 1, 100), row('dense', 'prefill', 4, 300), row('sparse', 'prefill', 1, 180), row('sparse', 'prefill', 4, 500),
  row('dense', 'decode', 1, 20), row('dense', 'decode', 4, 60), row('sparse', 'decode', 1, 40), row('sparse', 'decode', 4, 100),
];

/** Drawn items of the first data mark group of a kind (legend symbols live in other groups). */
function markItems(svg: string, kind: 'symbol' | 'rect'): number {
  const start = svg.indexOf(`class="mark-${kind} role-mark`);
  if (start < 0) return 0;
  const group = svg.slice(start, svg.indexOf('</g>', start));
  return (group.match(/<path/g) ?? []).length;
}

/** Well-formed enough: one root svg element, balanced, with a viewBox and drawn marks. */
function expectSvg(svg: string): void {
  expect(svg.startsWith('<svg')).toBe(true);
  expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  expect(svg).toMatch(/viewBox="0 0 \d+(\.\d+)? \d+(\.\d+)?"/);
  expect((svg.match(/<svg/g) ?? []).length).toBe((svg.match(/<\/svg>/g) ?? []).length);
  expect(svg).not.toMatch(/NaN/);
}

describe('report charts render to SVG headless', () => {
  test('throughput chart has a line per mode, both phases and its axis titles', async () => {
    const svg = await renderSvg(throughputChart(rows, 'Throughput'));
    expectSvg(svg);
    expect(svg).toContain('Batch size');
    expect(svg).toContain('Tokens per second');
    expect(svg).toContain('prefill');
    expect(svg).toContain('decode');
    expect((svg.match(/role-mark/g) ?? []).length).toBeGreaterThan(0);
    expect(svg).toContain('mark-line');
  });

  test('latency chart shows p50 and p95', async () => {
    const svg = await renderSvg(latencyChart(rows, 'Latency'));
    expectSvg(svg);
    expect(svg).toContain('Latency per call (ms)');
    expect(svg).toContain('p95');
  });

  test('roofline draws the roof and one symbol per measured point', async () => {
    const points = [
      { mode: 'dense', phase: 'decode', batch: 1, flops_per_byte: 1, achieved_gflops: 8 },
      { mode: 'sparse', phase: 'decode', batch: 1, flops_per_byte: 1, achieved_gflops: 9 },
      { mode: 'sparse', phase: 'prefill', batch: 64, flops_per_byte: 200, achieved_gflops: 70 },
    ];
    const svg = await renderSvg(rooflineChart(points, 10, 100, 'Roofline'));
    expectSvg(svg);
    expect(svg).toContain('Arithmetic intensity (FLOP per weight byte)');
    expect(svg).toContain('peak 100 GFLOP/s');
    expect(svg).toContain('10.0 GB/s');
    expect(markItems(svg, 'symbol')).toBe(3);
  });

  test('quality–cost chart labels the reference points', async () => {
    const points = [1, 2, 4, 8].map((k) => ({
      sweep: 'topk' as const, k, epsilon: null, mean_active_experts: k, active_params: k * 1e6, active_attention_params: 0, active_mlp_params: k * 1e6, loss: 2 - k / 10, perplexity: Math.exp(2 - k / 10), bits_per_byte: 1, layer_mean_experts: [k],
    }));
    const svg = await renderSvg(qualityCostChart(points, [{ label: 'plan', active_params: 2e6, perplexity: 5 }], 'Quality–cost'));
    expectSvg(svg);
    expect(svg).toContain('Active parameters per token (millions)');
    expect(svg).toContain('Held-out perplexity');
    expect(svg).toContain('>plan<');
  });

  test('expert-load heatmap has one rect per (layer, expert)', async () => {
    const cells = [];
    for (let layer = 0; layer < 2; layer++) for (let expert = 0; expert < 4; expert++) cells.push({ layer, expert, share: (layer + expert) / 8 });
    const svg = await renderSvg(expertLoadChart(cells, 'Expert load'));
    expectSvg(svg);
    expect(markItems(svg, 'rect')).toBe(8);
    expect(svg).toContain('Share of tokens');
  });
});
