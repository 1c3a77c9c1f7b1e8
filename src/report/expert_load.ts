import type { ExpertLoadCell } from './charts/expert_load_chart';

/** Per-layer expert load (share of tokens selecting each expert) from the runtime's counters. */
export function expertLoadFromCounts(expertCounts: readonly ArrayLike<number>[], tokens: number): ExpertLoadCell[] {
  const cells: ExpertLoadCell[] = [];
  expertCounts.forEach((layer, l) => {
    for (let e = 0; e < layer.length; e++) cells.push({ layer: l, expert: e, share: tokens > 0 ? layer[e] / tokens : 0 });
  });
  return cells;
}

/** The same from the converter's calibration report (plan.calibration.layers[l].expert_load). */
export function expertLoadFromCalibration(layers: readonly { expert_load?: number[] }[]): ExpertLoadCell[] {
  const cells: ExpertLoadCell[] = [];
  layers.forEach((layer, l) => (layer.expert_load ?? []).forEach((share, e) => cells.push({ layer: l, expert: e, share })));
  return cells;
}
