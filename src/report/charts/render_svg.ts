import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';

/**
 * Renders a Vega-Lite spec to an SVG string headless (no browser, no canvas): Vega-Lite compiles to a Vega spec and
 * a Vega view with the 'none' renderer serialises its scene graph to SVG.
 */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Shared look: readable in a README, white background. */
export const CHART_CONFIG = {
  background: 'white',
  font: 'Helvetica, Arial, sans-serif',
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 14 },
} as const;

export const SCHEMA = 'https://vega.github.io/schema/vega-lite/v5.json';

/** The frame every single-panel chart shares: schema, title, look and the README-sized plot area. */
export function chartFrame(title: string, width = 420, height = 300) {
  return { $schema: SCHEMA, title, config: CHART_CONFIG, width, height };
}
