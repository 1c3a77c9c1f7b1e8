/**
 * A study's points: the cartesian product of its axes (first axis slowest), each a complete recipe document — the
 * base recipe with the study's `set` fields and the point's axis values written in, study variables substituted
 * into expressions (the recipe machinery of src/recipe evaluates the rest), and the constraint's field solved.
 * Every point's recipe is evaluated and validated here, before anything trains.
 */
import * as fs from 'fs';
import * as path from 'path';
import { createHash } from 'crypto';
import YAML from 'yaml';
import { UserError } from '../errors';
import { canonicalJson, recipeFromDocument, type Recipe } from '../recipe';
import { substituteNames } from '../recipe/expressions';
import { fieldName, type AxisValue, type FieldPath, type StudySpec } from './study_file';
import { recipeCost, type RecipeCost } from './study_cost';

type Document = Record<string, unknown>;

export interface StudyPoint {
  index: number;
  id: string; // folder name under points/: p<index>-<hash of the recipe content>
  label: string; // "num_experts=8 mode=topk"
  values: Record<string, AxisValue>; // axis key → value
  document: Document; // the recipe to write (corpus paths absolute)
  recipe: Recipe; // evaluated as the trainer will see it
  cost: RecipeCost;
  constraint?: { quantity: string; target: number; achieved: number; field: string; value: number };
}

function clone(value: Document): Document {
  return JSON.parse(JSON.stringify(value)) as Document;
}

function setField(document: Document, field: FieldPath, value: AxisValue): void {
  if (!field.section) {
    document[field.leaf] = value;
    return;
  }
  const section = (document[field.section] ??= {}) as Document;
  if (typeof section !== 'object' || section === null || Array.isArray(section)) {
    throw new UserError(`${field.section}: expected a mapping in the base recipe`);
  }
  if (field.section === 'train' && (field.leaf === 'tokens' || field.leaf === 'max_steps')) {
    delete section.tokens; // the recipe takes one of the two
    delete section.max_steps;
  }
  section[field.leaf] = value;
}

/** The base recipe's corpus paths, made absolute so the point recipe can live in another folder. */
function absoluteCorpus(document: Document, baseFile: string): void {
  const data = document.data as Document | undefined;
  if (!data || data.corpus === undefined || data.corpus === 'default') return;
  const base = path.dirname(baseFile);
  const absolute = (entry: unknown) => (typeof entry === 'string' ? path.resolve(base, entry) : entry);
  data.corpus = Array.isArray(data.corpus) ? data.corpus.map(absolute) : absolute(data.corpus);
}

function cartesian<T>(lists: T[][]): T[][] {
  return lists.reduce<T[][]>((products, list) => products.flatMap((prefix) => list.map((value) => [...prefix, value])), [[]]);
}

function formatValue(value: AxisValue): string {
  return typeof value === 'number' ? String(Number(value.toPrecision(6))) : String(value);
}

/** Evaluates a point document as its recipe file; errors name the study and the point. */
function evaluate(spec: StudySpec, label: string, document: Document, recipeFile: string): Recipe {
  try {
    return recipeFromDocument(clone(document), recipeFile);
  } catch (error) {
    if (error instanceof UserError) {
      throw new UserError(`${spec.file}: point ${label}: ${error.message.replace(`${recipeFile}: `, '')}`);
    }
    throw error;
  }
}

/**
 * Chooses the integer value of the constraint's field whose cost-model quantity is nearest the target, by
 * bisection (the quantities grow with every size field: widths, counts, steps). A value the recipe rejects (too few
 * steps for its warmup, say) counts as below the target: such limits are lower bounds.
 */
function solveConstraint(spec: StudySpec, label: string, document: Document, recipeFile: string): { document: Document; recipe: Recipe; achieved: number; value: number } {
  const constraint = spec.constraint!;
  const quantityAt = (value: number) => {
    const candidate = clone(document);
    setField(candidate, constraint.solve, value);
    try {
      const recipe = evaluate(spec, label, candidate, recipeFile);
      return { document: candidate, recipe, achieved: recipeCost(recipe)[constraint.quantity], value, error: null };
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      return { document: candidate, recipe: null, achieved: -Infinity, value, error };
    }
  };
  let low = 1;
  let high = 1;
  while (quantityAt(high).achieved < constraint.target) {
    low = high;
    high *= 2;
    if (high > 2 ** 40) {
      const last = quantityAt(low);
      if (last.error) throw last.error;
      throw new UserError(`${spec.file}: point ${label}: constraint ${constraint.quantity} ${constraint.target} is not reached by any ${fieldName(constraint.solve)}`);
    }
  }
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (quantityAt(middle).achieved < constraint.target) low = middle;
    else high = middle;
  }
  const candidates = [quantityAt(low), quantityAt(high)].filter((c) => c.recipe !== null);
  const best = candidates.reduce((a, b) => (Math.abs(b.achieved - constraint.target) < Math.abs(a.achieved - constraint.target) ? b : a));
  const error = Math.abs(best.achieved - constraint.target) / constraint.target;
  if (error > constraint.tolerance) {
    throw new UserError(
      `${spec.file}: point ${label}: the nearest ${fieldName(constraint.solve)} (${best.value}) gives ${constraint.quantity} ${best.achieved.toPrecision(4)}, ` +
        `${(error * 100).toFixed(1)}% from the target ${constraint.target} (tolerance ${constraint.tolerance * 100}%)`,
    );
  }
  return { document: best.document, recipe: best.recipe!, achieved: best.achieved, value: best.value };
}

/**
 * Every point of the study, in order. `corpusFor` gives the corpus a point trains on when the study mixes probes
 * into the text (null: the base recipe's own corpus); `dirFor` the folder the point's recipe file will live in.
 */
export function studyPoints(spec: StudySpec, options: { pointsDir: string; corpusFile: string | null }): StudyPoint[] {
  const base = YAML.parse(fs.readFileSync(spec.recipeFile, 'utf8')) as unknown;
  if (base === null || typeof base !== 'object' || Array.isArray(base)) throw new UserError(`${spec.recipeFile}: expected a mapping of recipe sections`);
  const baseDocument = clone(base as Document);
  absoluteCorpus(baseDocument, spec.recipeFile);
  if (options.corpusFile) ((baseDocument.data ??= {}) as Document).corpus = options.corpusFile;

  const cases = spec.cases.length ? spec.cases : [{ label: '', set: [] }];
  const combinations = cartesian<unknown>([cases, ...spec.axes.map((axis) => axis.values)]);
  const points = combinations.map((combination, index) => {
    const studyCase = combination[0] as (typeof cases)[number];
    const axisValues = combination.slice(1) as AxisValue[];
    const values: Record<string, AxisValue> = {};
    if (spec.cases.length) values.case = studyCase.label;
    spec.axes.forEach((axis, i) => (values[axis.key] = axisValues[i]));
    const label = [studyCase.label, ...spec.axes.map((axis, i) => `${axis.key}=${formatValue(axisValues[i])}`)].filter(Boolean).join(' ') || 'base';
    const settings = [...spec.set, ...studyCase.set];
    const variables: Record<string, number> = {};
    for (const setting of settings) if (!setting.field) variables[setting.key] = setting.value as number;
    spec.axes.forEach((axis, i) => {
      if (!axis.field) variables[axis.key] = axisValues[i] as number;
    });

    let document = clone(baseDocument);
    const substitute = (value: AxisValue): AxisValue => {
      if (typeof value !== 'string' || Object.keys(variables).length === 0) return value;
      try {
        return substituteNames(value, variables);
      } catch {
        return value; // not an expression (an enum value such as "topk"): the recipe checks it
      }
    };
    for (const setting of settings) if (setting.field) setField(document, setting.field, substitute(setting.value));
    spec.axes.forEach((axis, i) => {
      if (axis.field) setField(document, axis.field, substitute(axisValues[i]));
    });
    const provisional = `${spec.name}-p${String(index).padStart(2, '0')}`;
    document.name = provisional;
    const recipeFile = path.join(options.pointsDir, provisional, 'recipe.yaml');
    let recipe: Recipe;
    let constraint: StudyPoint['constraint'];
    if (spec.constraint) {
      const solved = solveConstraint(spec, label, document, recipeFile);
      document = solved.document;
      recipe = solved.recipe;
      constraint = { quantity: spec.constraint.quantity, target: spec.constraint.target, achieved: solved.achieved, field: fieldName(spec.constraint.solve), value: solved.value };
    } else {
      recipe = evaluate(spec, label, document, recipeFile);
    }
    const { name: _name, file: _file, ...content } = recipe;
    const hash = createHash('sha256').update(canonicalJson(content)).digest('hex').slice(0, 8);
    return { index, id: `p${String(index).padStart(2, '0')}-${hash}`, label, values, document, recipe, cost: recipeCost(recipe), constraint };
  });
  return points;
}
