import * as path from 'path';
import { writeFileAtomic } from '../checkpoint/atomic';
import type { ReportJson } from './report_json';
import { renderSvg } from './charts/render_svg';
import { throughputChart } from './charts/throughput_chart';
import { latencyChart } from './charts/latency_chart';
import { rooflineChart } from './charts/roofline_chart';
import { qualityCostChart } from './charts/quality_cost_chart';
import { expertLoadChart } from './charts/expert_load_chart';
import { expertDtypeChart } from './charts/expert_dtype_chart';

/** Renders every figure the report has data for into `dir`; returns their file names in report order. */
export async function writeFigures(report: ReportJson, dir: string): Promise<string[]> {
  const label = report.kind === 'random-init' ? `${report.sources.shape} (random init)` : 'dense vs sparse';
  const figures: [string, Parameters<typeof renderSvg>[0]][] = [
    ['throughput.svg', throughputChart(report.throughput, `Throughput, ${label}`)],
    ['latency.svg', latencyChart(report.throughput, `Latency per call, ${label}`)],
    ['roofline.svg', rooflineChart(report.roofline, report.memory_bandwidth_gbs, report.peak_gflops, `Roofline (measured limits), ${label}`)],
  ];
  if (report.quality_cost.length && report.quality) {
    const markers = [
      { label: 'dense', active_params: report.params.dense.active_per_token, perplexity: report.quality.dense.perplexity },
      { label: 'plan', active_params: report.params.sparse.active_per_token, perplexity: report.quality.sparse.perplexity },
    ];
    figures.push(['quality_cost.svg', qualityCostChart(report.quality_cost, markers, 'Perplexity vs active parameters')]);
  }
  if ((report.expert_dtypes ?? []).filter((r) => r.quality).length >= 2) {
    figures.push(['expert_dtypes.svg', expertDtypeChart(report.expert_dtypes ?? [], 'Perplexity vs weight bytes per token, by expert dtype')]);
  }
  if (report.expert_load && report.expert_load.cells.length) {
    figures.push(['expert_load.svg', expertLoadChart(report.expert_load.cells, 'Expert load per layer')]);
  }
  const written: string[] = [];
  for (const [name, spec] of figures) {
    const svg = await renderSvg(spec);
    const file = path.join(dir, name);
    writeFileAtomic(file, svg);
    written.push(name);
  }
  return written;
}
