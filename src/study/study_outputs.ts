/**
 * A study's outputs, rewritten after every point so a long study can be read while it runs:
 * study.json (the spec and every point: finished ones with their results, the rest as pending), study.md (one table,
 * the charts, the command) and the SVG charts.
 */
import * as path from 'path';
import { writeFileAtomic, writeJsonAtomic } from '../checkpoint/atomic';
import { renderSvg } from '../report/charts/render_svg';
import { formatCount, markdownTable } from '../report/format';
import { fieldName, type StudySpec } from './study_file';
import type { StudyPoint } from './study_points';
import type { PointResult } from './run_point';
import { studyChart, type ChartRow } from './study_charts';

export interface StudyJson {
  format: 'dsmoe-study';
  version: 1;
  name: string;
  study_file: string;
  base_recipe: string;
  axes: { key: string; values: unknown[] }[];
  set: { key: string; value: unknown }[];
  constraint: unknown;
  probes: unknown;
  convert: unknown;
  points: ({ id: string; index: number; label: string; status: 'done' | 'pending'; cost: StudyPoint['cost'] } & Partial<PointResult>)[];
}

export function studyJson(spec: StudySpec, points: StudyPoint[], results: Map<string, PointResult>): StudyJson {
  return {
    format: 'dsmoe-study',
    version: 1,
    name: spec.name,
    study_file: spec.file,
    base_recipe: spec.recipeFile,
    axes: spec.axes.map((axis) => ({ key: axis.key, values: axis.values })),
    set: spec.set.map((setting) => ({ key: setting.field ? fieldName(setting.field) : setting.key, value: setting.value })),
    constraint: spec.constraint ? { ...spec.constraint, solve: fieldName(spec.constraint.solve) } : null,
    probes: spec.probes,
    convert: spec.convert,
    points: points.map((point) => {
      const result = results.get(point.id);
      return result
        ? { ...result, status: 'done' as const }
        : { id: point.id, index: point.index, label: point.label, status: 'pending' as const, cost: point.cost, ...(point.constraint ? { constraint: point.constraint } : {}) };
    }),
  };
}

function number(value: number | undefined, digits = 3): string {
  return value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

/** An active-parameter level's legend label: the count rounded to 2 significant digits. */
function level(activeParams: number): string {
  return `${formatCount(Number(activeParams.toPrecision(2)))} active`;
}

const FIGURES = ['loss_vs_tpp.svg', 'loss_vs_active_flops.svg', 'probes_vs_tpp.svg', 'probes_vs_active_flops.svg'];

async function writeCharts(dir: string, done: PointResult[]): Promise<string[]> {
  const lossRows = (x: (r: PointResult) => number, series: (r: PointResult) => string): ChartRow[] =>
    done.flatMap((r) => [
      { point: r.label, series: `${series(r)}, dense`, x: x(r), y: r.dense.loss },
      { point: r.label, series: `${series(r)}, sparse plan`, x: x(r), y: r.sparse.loss },
    ]);
  const probeRows = (x: (r: PointResult) => number, series: (r: PointResult) => string): ChartRow[] =>
    done.flatMap((r) =>
      Object.entries(r.probes?.plan ?? {}).map(([probe, score]) => ({ point: r.label, series: series(r), x: x(r), y: score.accuracy, panel: probe })),
    );
  const byActive = (r: PointResult) => level(r.cost.active_params);
  const byRouting = (r: PointResult) => (r.routing === 'topk' ? 'SMoE' : 'DS-MoE');
  const figures: [string, ReturnType<typeof studyChart>][] = [
    ['loss_vs_tpp.svg', studyChart(lossRows((r) => r.cost.tpp, byActive), { x: 'Training tokens per parameter', y: 'Held-out loss (nats/token)', series: 'Active parameters', title: 'Loss vs tokens per parameter', logX: true })],
    ['loss_vs_active_flops.svg', studyChart(lossRows((r) => r.plan.active_flops_per_token, byRouting), { x: 'Active FLOPs per token (served plan)', y: 'Held-out loss (nats/token)', series: 'Training', title: 'Loss vs active FLOPs', logX: true })],
  ];
  if (done.some((r) => r.probes)) {
    figures.push(['probes_vs_tpp.svg', studyChart(probeRows((r) => r.cost.tpp, byActive), { x: 'Training tokens per parameter', y: 'Exact-match accuracy (plan)', series: 'Active parameters', title: 'Probe accuracy vs tokens per parameter', logX: true })]);
    figures.push(['probes_vs_active_flops.svg', studyChart(probeRows((r) => r.plan.active_flops_per_token, byRouting), { x: 'Active FLOPs per token (served plan)', y: 'Exact-match accuracy (plan)', series: 'Training', title: 'Probe accuracy vs active FLOPs', logX: true })]);
  }
  const written: string[] = [];
  for (const [name, spec] of figures) {
    writeFileAtomic(path.join(dir, name), await renderSvg(spec));
    written.push(name);
  }
  return written;
}

export function studyMarkdown(study: StudyJson, figures: string[], command: string): string {
  const done = study.points.filter((p) => p.status === 'done') as (StudyJson['points'][number] & PointResult)[];
  const probeKinds = [...new Set(done.flatMap((p) => Object.keys(p.probes?.plan ?? {})))];
  const header = ['point', 'routing', 'total params', 'active params', 'tokens', 'TPP', 'dense loss', 'dense ppl', 'plan k', 'sparse ppl', ...probeKinds.map((k) => `${k} (plan / dense)`)];
  const rows = study.points.map((p) => {
    if (p.status !== 'done') return [p.label, '-', formatCount(p.cost.total_params), formatCount(p.cost.active_params), formatCount(p.cost.tokens), formatTpp(p.cost.tpp), 'pending', '', '', '', ...probeKinds.map(() => '')];
    const r = p as PointResult;
    return [
      r.label,
      r.routing === 'topk' ? 'SMoE' : 'DS-MoE',
      formatCount(r.cost.total_params),
      formatCount(r.cost.active_params),
      formatCount(r.cost.tokens),
      formatTpp(r.cost.tpp),
      number(r.dense.loss, 4),
      number(r.dense.perplexity, 3),
      r.plan.k.join(','),
      number(r.sparse.perplexity, 3),
      ...probeKinds.map((kind) => `${number(r.probes?.plan[kind]?.accuracy, 3)} / ${number(r.probes?.dense[kind]?.accuracy, 3)}`),
    ];
  });
  const lines = [
    `# Study ${study.name}`,
    '',
    `${done.length} of ${study.points.length} points done. Study file \`${study.study_file}\`, base recipe \`${study.base_recipe}\`.`,
    `Command: \`${command}\``,
    '',
    'Losses are the trainer\'s held-out evaluation at its last step (dense: all experts) and the converted plan\'s on the same ' +
      'windows (DS-MoE: threshold-topk, the converter\'s default; SMoE: top-k at its training k; plan k per layer). Parameters and FLOPs come from the plan cost model ' +
      '(src/study/study_cost.ts): active = the served k; TPP = training tokens / total parameters. Probe columns are exact-match ' +
      'accuracies on the served plan / the dense model (src/study/probes.ts).',
    '',
    markdownTable(header, rows),
    '',
    ...figures.map((figure) => `![${figure}](${figure})`),
    '',
  ];
  return lines.join('\n');
}

/** Writes study.json, the charts and study.md into `dir`. */
export async function writeStudyOutputs(dir: string, spec: StudySpec, points: StudyPoint[], results: Map<string, PointResult>, command: string): Promise<StudyJson> {
  const study = studyJson(spec, points, results);
  writeJsonAtomic(path.join(dir, 'study.json'), study);
  const done = points.map((p) => results.get(p.id)).filter((r): r is PointResult => r !== undefined);
  const figures = done.length ? await writeCharts(dir, done) : [];
  writeFileAtomic(path.join(dir, 'study.md'), studyMarkdown(study, figures.filter((f) => FIGURES.includes(f)), command));
  return study;
}

/** Tokens per parameter: one decimal from 1 up, two significant digits below (a reduced run trains well under 1). */
function formatTpp(tpp: number): string {
  return tpp >= 1 ? tpp.toFixed(1) : tpp.toPrecision(2);
}
