/**
 * Reads a study file (YAML or JSON): a base recipe, the fields every point sets, the axes whose cartesian product
 * makes the points, an optional constraint, the probes and the converter settings. Everything is checked here,
 * before any training starts; errors are one line naming the file and the field.
 *
 * ```yaml
 * name: fine-grained             # default: the file's base name
 * recipe: ../recipes/tiny.yaml   # the base recipe, relative to this file
 * set:                           # every point: a recipe field (dotted or its bare name) = value or expression
 *   train.max_steps: 400
 *   model.num_experts: "8 * G"   # expressions may use axis variables and the recipe's own names
 * cases:                         # optional: a list of named variants (each a set of its own), crossed with the axes
 *   - { label: DS-MoE, routing.mode: dense }
 *   - { label: SMoE top-2, routing.mode: topk, top_k: 2 }
 * axes:                          # lists; their cartesian product is the points, first axis slowest (after cases)
 *   G: [1, 2, 4]                 # a name that is no recipe field is a study variable (numbers only)
 * constraint:                    # optional: solve one integer field so that a cost-model quantity is met
 *   active_params: 1.5e5         # or training_flops (see study_cost.ts)
 *   solve: model.moe_intermediate_size
 * probes: { ... }                # optional, see probes.ts
 * convert: { calib_tokens: 1024 }   # the converter's defaults otherwise (threshold-topk, ε 0.48, f32)
 * ```
 */
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { UserError } from '../errors';
import { SECTIONS, TOP_LEVEL } from '../recipe/schema';
import { DEFAULT_EPSILON } from '../convert/convert_checkpoint';
import { parseProbeSpec, type ProbeSpec } from './probes';
import { isMapping, show, type Raw } from '../recipe/raw_values';

/** Where a recipe field lives: `model.num_experts` → { section: 'model', leaf: 'num_experts' }; top-level: section ''. */
export interface FieldPath {
  section: string;
  leaf: string;
}

export type AxisValue = number | string | boolean;

export interface StudyAxis {
  key: string; // as written in the study file
  field: FieldPath | null; // null: a study variable
  values: AxisValue[];
}

export interface StudySetting {
  key: string;
  field: FieldPath | null;
  value: AxisValue;
}

export type ConstraintQuantity = 'active_params' | 'training_flops';

export interface StudyConstraint {
  quantity: ConstraintQuantity;
  target: number;
  solve: FieldPath;
  tolerance: number; // relative; a point that cannot come this close is an error
}

export interface ConvertSettings {
  calib_tokens: number;
  epsilon: number;
}

/** One entry of `cases`: its own settings, applied after `set` and before the axes. */
export interface StudyCase {
  label: string;
  set: StudySetting[];
}

export interface StudySpec {
  name: string;
  file: string; // absolute
  recipeFile: string; // absolute path of the base recipe
  set: StudySetting[];
  cases: StudyCase[]; // empty: one implicit case

  axes: StudyAxis[];
  constraint: StudyConstraint | null;
  probes: ProbeSpec | null;
  convert: ConvertSettings;
}

const TOP_KEYS = ['name', 'recipe', 'set', 'cases', 'axes', 'constraint', 'probes', 'convert'];
const CONSTRAINT_QUANTITIES: ConstraintQuantity[] = ['active_params', 'training_flops'];

/**
 * A key of `set` / `axes` as a recipe field: `section.leaf`, a bare leaf (the names recipe expressions use), `name`
 * or `seed`; null when it names no field (a study variable). `train.tokens` is a field (it sets max_steps).
 */
export function recipeField(key: string): FieldPath | null {
  const dot = key.indexOf('.');
  if (dot >= 0) {
    const section = key.slice(0, dot);
    const leaf = key.slice(dot + 1);
    if (section in SECTIONS && leaf in SECTIONS[section as keyof typeof SECTIONS]) return { section, leaf };
    return null;
  }
  if (key in TOP_LEVEL) return { section: '', leaf: key };
  const sections = Object.entries(SECTIONS).filter(([, fields]) => key in fields);
  return sections.length === 1 ? { section: sections[0][0], leaf: key } : null;
}

export function fieldName(field: FieldPath): string {
  return field.section ? `${field.section}.${field.leaf}` : field.leaf;
}

function isScalar(value: unknown): value is AxisValue {
  return (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'string' || typeof value === 'boolean';
}

/** A study variable must be a plain identifier and hold numbers (it is substituted into expressions). */
function checkVariable(file: string, where: string, key: string, values: AxisValue[]): void {
  if (key.includes('.')) {
    throw new UserError(`${file}: ${where}.${key}: unknown recipe field (a study variable is a plain name such as "tpp")`);
  }
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new UserError(`${file}: ${where}.${key}: expected a recipe field or a variable name`);
  for (const value of values) {
    if (typeof value !== 'number') {
      throw new UserError(`${file}: ${where}.${key}: a study variable takes numbers, got ${show(value)} (is "${key}" a misspelt recipe field?)`);
    }
  }
}

function readSettings(file: string, raw: unknown, where = 'set'): StudySetting[] {
  if (raw === undefined) return [];
  if (!isMapping(raw)) throw new UserError(`${file}: ${where}: expected a mapping of field: value, got ${show(raw)}`);
  return Object.entries(raw).map(([key, value]) => {
    if (!isScalar(value)) throw new UserError(`${file}: ${where}.${key}: expected a number, a string or an expression, got ${show(value)}`);
    const field = recipeField(key);
    if (!field) checkVariable(file, where, key, [value]);
    return { key, field, value };
  });
}

function readCases(file: string, raw: unknown): StudyCase[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.length === 0) throw new UserError(`${file}: cases: expected a non-empty list of mappings, got ${show(raw)}`);
  const cases = raw.map((entry, i) => {
    if (!isMapping(entry)) throw new UserError(`${file}: cases[${i}]: expected a mapping of field: value, got ${show(entry)}`);
    const { label, ...fields } = entry;
    if (label !== undefined && (typeof label !== 'string' || label.trim() === '')) throw new UserError(`${file}: cases[${i}].label: expected a non-empty string, got ${show(label)}`);
    const set = readSettings(file, fields, `cases[${i}]`);
    return { label: (label as string | undefined) ?? (set.map((s) => `${s.key}=${s.value}`).join(' ') || `case ${i}`), set };
  });
  const labels = cases.map((c) => c.label);
  const twice = labels.find((label, i) => labels.indexOf(label) !== i);
  if (twice) throw new UserError(`${file}: cases: two cases are labelled ${show(twice)}`);
  return cases;
}

function readAxes(file: string, raw: unknown): StudyAxis[] {
  if (raw === undefined) return [];
  if (!isMapping(raw)) throw new UserError(`${file}: axes: expected a mapping of field: [values], got ${show(raw)}`);
  return Object.entries(raw).map(([key, values]) => {
    if (!Array.isArray(values) || values.length === 0 || !values.every(isScalar)) {
      throw new UserError(`${file}: axes.${key}: expected a non-empty list of values, got ${show(values)} (fixed values go under set:)`);
    }
    if (new Set(values.map(show)).size !== values.length) throw new UserError(`${file}: axes.${key}: a value is listed twice in ${show(values)}`);
    const field = recipeField(key);
    if (!field) checkVariable(file, 'axes', key, values as AxisValue[]);
    return { key, field, values: values as AxisValue[] };
  });
}

function readConstraint(file: string, raw: unknown): StudyConstraint | null {
  if (raw === undefined || raw === null) return null;
  if (!isMapping(raw)) throw new UserError(`${file}: constraint: expected a mapping, got ${show(raw)}`);
  for (const key of Object.keys(raw)) {
    if (![...CONSTRAINT_QUANTITIES, 'solve', 'tolerance'].includes(key)) {
      throw new UserError(`${file}: constraint.${key}: unknown field; allowed: ${[...CONSTRAINT_QUANTITIES, 'solve', 'tolerance'].join(', ')}`);
    }
  }
  const given = CONSTRAINT_QUANTITIES.filter((q) => raw[q] !== undefined);
  if (given.length !== 1) throw new UserError(`${file}: constraint: expected exactly one of ${CONSTRAINT_QUANTITIES.join(', ')}, got ${given.length}`);
  const quantity = given[0];
  const target = raw[quantity];
  if (typeof target !== 'number' || !(target > 0) || !Number.isFinite(target)) {
    throw new UserError(`${file}: constraint.${quantity}: expected a positive number, got ${show(target)}`);
  }
  const solveKey = raw.solve;
  const solve = typeof solveKey === 'string' ? recipeField(solveKey) : null;
  const spec = solve ? (solve.section ? SECTIONS[solve.section as keyof typeof SECTIONS][solve.leaf] : TOP_LEVEL[solve.leaf]) : null;
  if (!solve || !spec || spec.kind !== 'number' || !spec.check.integer) {
    throw new UserError(`${file}: constraint.solve: expected an integer recipe field (e.g. model.moe_intermediate_size), got ${show(solveKey)}`);
  }
  const tolerance = raw.tolerance ?? 0.05;
  if (typeof tolerance !== 'number' || !(tolerance > 0 && tolerance < 1)) {
    throw new UserError(`${file}: constraint.tolerance: expected a number in (0, 1), got ${show(tolerance)}`);
  }
  return { quantity, target, solve, tolerance };
}

function readConvert(file: string, raw: unknown): ConvertSettings {
  const settings: ConvertSettings = { calib_tokens: 4096, epsilon: DEFAULT_EPSILON };
  if (raw === undefined) return settings;
  if (!isMapping(raw)) throw new UserError(`${file}: convert: expected a mapping, got ${show(raw)}`);
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'calib_tokens') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
        throw new UserError(`${file}: convert.calib_tokens: expected a positive integer, got ${show(value)}`);
      }
      settings.calib_tokens = value;
    } else if (key === 'epsilon') {
      if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
        throw new UserError(`${file}: convert.epsilon: expected a number ≥ 0, got ${show(value)}`);
      }
      settings.epsilon = value;
    } else {
      throw new UserError(`${file}: convert.${key}: unknown field; allowed: calib_tokens, epsilon`);
    }
  }
  return settings;
}

export function loadStudy(file: string): StudySpec {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UserError(`${file}: cannot read the study (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  let document: unknown;
  try {
    document = file.toLowerCase().endsWith('.json') ? JSON.parse(text) : YAML.parse(text, { prettyErrors: false });
  } catch (error) {
    throw new UserError(`${file}: invalid ${file.toLowerCase().endsWith('.json') ? 'JSON' : 'YAML'}: ${(error as Error).message.split('\n')[0]}`);
  }
  if (!isMapping(document)) throw new UserError(`${file}: expected a mapping (recipe, set, axes, ...), got ${show(document)}`);
  for (const key of Object.keys(document)) {
    if (!TOP_KEYS.includes(key)) throw new UserError(`${file}: ${key}: unknown field; allowed: ${TOP_KEYS.join(', ')}`);
  }
  const name = document.name ?? path.basename(file).replace(/\.(ya?ml|json)$/i, '');
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new UserError(`${file}: name: expected letters, digits, ".", "_" or "-", got ${show(name)}`);
  }
  if (typeof document.recipe !== 'string' || document.recipe === '') {
    throw new UserError(`${file}: recipe: expected the path of the base recipe, got ${show(document.recipe)}`);
  }
  const recipeFile = path.resolve(path.dirname(path.resolve(file)), document.recipe);
  if (!fs.existsSync(recipeFile)) throw new UserError(`${file}: recipe: no such file ${recipeFile}`);
  const set = readSettings(file, document.set);
  const cases = readCases(file, document.cases);
  const axes = readAxes(file, document.axes);
  const keys = [...set.map((s) => s.field ? fieldName(s.field) : s.key), ...axes.map((a) => a.field ? fieldName(a.field) : a.key)];
  const twice = keys.find((key, i) => keys.indexOf(key) !== i);
  if (twice) throw new UserError(`${file}: ${twice}: given twice (under set and axes, or under two spellings)`);
  const axisKeys = axes.map((a) => (a.field ? fieldName(a.field) : a.key));
  for (const studyCase of cases) {
    const clash = studyCase.set.map((s) => (s.field ? fieldName(s.field) : s.key)).find((key) => axisKeys.includes(key));
    if (clash) throw new UserError(`${file}: cases: ${show(studyCase.label)} sets ${clash}, which is also an axis`);
    keys.push(...studyCase.set.map((s) => (s.field ? fieldName(s.field) : s.key)));
  }
  const constraint = readConstraint(file, document.constraint);
  if (constraint && keys.includes(fieldName(constraint.solve))) {
    throw new UserError(`${file}: constraint.solve: ${fieldName(constraint.solve)} is also set by the study; the constraint chooses it`);
  }
  return {
    name,
    file: path.resolve(file),
    recipeFile,
    set,
    cases,
    axes,
    constraint,
    probes: document.probes === undefined ? null : parseProbeSpec(file, document.probes),
    convert: readConvert(file, document.convert),
  };
}

/**
 * `--set field=value` on the command line: replaces (or adds) a `set` entry of the study for this run, e.g. a reduced
 * step count. The value is read as YAML (numbers stay numbers; expressions are strings).
 */
export function withOverrides(spec: StudySpec, overrides: readonly string[]): StudySpec {
  let set = [...spec.set];
  for (const override of overrides) {
    const at = override.indexOf('=');
    if (at <= 0) throw new UserError(`--set ${override}: expected field=value, e.g. train.max_steps=200`);
    const key = override.slice(0, at).trim();
    const value = YAML.parse(override.slice(at + 1)) as unknown;
    if (!isScalar(value)) throw new UserError(`--set ${override}: expected a number, a string or an expression, got ${show(value)}`);
    const field = recipeField(key);
    if (!field) checkVariable('--set', 'set', key, [value]);
    const name = field ? fieldName(field) : key;
    if (spec.axes.some((a) => (a.field ? fieldName(a.field) : a.key) === name)) throw new UserError(`--set ${override}: ${name} is an axis of ${spec.file}`);
    set = set.filter((s) => (s.field ? fieldName(s.field) : s.key) !== name);
    set.push({ key, field, value });
  }
  return { ...spec, set };
}
