/**
 * Evaluates a recipe's numeric fields, which may be mathjs expressions over each other, in dependency order.
 * Each value is range-checked as soon as it is known, so that a later expression never sees a bad input.
 */
import { all, create, type MathNode } from 'mathjs';
import type { NumberCheck } from './schema';

const math = create(all, {});

/** One named number: a literal, an expression over other names, or a value computed from other names. */
export interface Variable {
  field: string; // where it is written ("train.lr"), or the derived name ("params")
  literal?: number;
  expression?: string;
  computed?: { dependsOn: string[]; compute: (values: Map<string, number>) => number };
  check?: NumberCheck;
}

/** Thrown by the resolver; the loader prefixes the file name. */
export class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function describe(raw: unknown): string {
  return typeof raw === 'string' ? JSON.stringify(raw) : String(raw);
}

/** The names an expression refers to (function names and mathjs constants such as pi excluded). */
function referencedNames(node: MathNode): string[] {
  const names = new Set<string>();
  node.traverse((child, path, parent) => {
    if (child.type === 'SymbolNode' && !(parent?.type === 'FunctionNode' && path === 'fn')) {
      names.add((child as unknown as { name: string }).name);
    }
  });
  return [...names];
}

function isMathConstant(name: string): boolean {
  return typeof (math as unknown as Record<string, unknown>)[name] === 'number';
}

/** Parses an expression, refusing assignments and definitions (a recipe only computes values). */
export function parseExpression(variable: Variable, text: string): MathNode {
  const expected = variable.check ? `expected ${variable.check.expected}` : 'expected a number';
  let node: MathNode;
  try {
    node = math.parse(text);
  } catch (error) {
    throw new FieldError(variable.field, `${expected}, got ${describe(text)} (not a valid expression: ${(error as Error).message})`);
  }
  let assigns = false;
  node.traverse((child) => {
    if (child.type === 'AssignmentNode' || child.type === 'FunctionAssignmentNode' || child.type === 'BlockNode') assigns = true;
  });
  if (assigns) throw new FieldError(variable.field, `${expected}, got ${describe(text)} (an expression may not assign)`);
  return node;
}

/** Applies the field's range check; integers within rounding error of an integer are snapped to it. */
export function checkValue(variable: Variable, value: unknown, source: unknown): number {
  const expected = variable.check ? `expected ${variable.check.expected}` : 'expected a number';
  const from = source !== value ? ` (from ${describe(source)})` : '';
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new FieldError(variable.field, `${expected}, got ${describe(typeof value === 'object' ? String(value) : value)}${from}`);
  }
  let number = value;
  if (variable.check?.integer) {
    const nearest = Math.round(number);
    if (Math.abs(number - nearest) > 1e-9 * Math.max(1, Math.abs(number))) {
      throw new FieldError(variable.field, `${expected}, got ${number}${from}`);
    }
    number = nearest;
  }
  if (variable.check && !variable.check.test(number)) {
    throw new FieldError(variable.field, `${expected}, got ${number}${from}`);
  }
  return number;
}

/**
 * Resolves every variable. Errors name the field: an unknown name lists the known ones, a cycle shows its path.
 */
export function resolveVariables(variables: Map<string, Variable>): Map<string, number> {
  const values = new Map<string, number>();
  const parsed = new Map<string, MathNode>();
  for (const [name, variable] of variables) {
    if (variable.expression !== undefined) parsed.set(name, parseExpression(variable, variable.expression));
  }
  const inProgress: string[] = [];

  const resolve = (name: string): number => {
    const known = values.get(name);
    if (known !== undefined) return known;
    const variable = variables.get(name)!;
    const cycleStart = inProgress.indexOf(name);
    if (cycleStart >= 0) {
      const cycle = [...inProgress.slice(cycleStart), name].join(' → ');
      throw new FieldError(variables.get(inProgress[cycleStart])!.field, `circular reference: ${cycle}`);
    }
    inProgress.push(name);
    let value: number;
    if (variable.literal !== undefined) {
      value = checkValue(variable, variable.literal, variable.literal);
    } else if (variable.computed) {
      for (const dependency of variable.computed.dependsOn) resolve(dependency);
      value = checkValue(variable, variable.computed.compute(values), undefined);
    } else {
      const node = parsed.get(name)!;
      const scope: Record<string, number> = {};
      for (const reference of referencedNames(node)) {
        if (variables.has(reference)) scope[reference] = resolve(reference);
        else if (!isMathConstant(reference)) {
          const expected = variable.check ? `expected ${variable.check.expected}` : 'expected a number';
          throw new FieldError(
            variable.field,
            `${expected}, got ${describe(variable.expression)} (unknown name "${reference}"; names available: ${[...variables.keys()].sort().join(', ')})`,
          );
        }
      }
      let result: unknown;
      try {
        result = node.compile().evaluate(scope);
      } catch (error) {
        throw new FieldError(variable.field, `cannot evaluate ${describe(variable.expression)}: ${(error as Error).message}`);
      }
      value = checkValue(variable, result, variable.expression);
    }
    inProgress.pop();
    values.set(name, value);
    return value;
  };

  for (const name of variables.keys()) resolve(name);
  return values;
}

/**
 * Replaces the given names in an expression by their values and returns the expression's text (mathjs syntax):
 * a study writes each point's recipe with its own variables (`tpp`, `G`) already substituted, so that the recipe
 * evaluates the rest (`tpp * params` → `20 * params`). Throws on text that does not parse.
 */
export function substituteNames(text: string, values: Readonly<Record<string, number>>): string {
  const node = math.parse(text).transform((child, path, parent) => {
    if (child.type !== 'SymbolNode' || (parent?.type === 'FunctionNode' && path === 'fn')) return child;
    const name = (child as unknown as { name: string }).name;
    return Object.prototype.hasOwnProperty.call(values, name) ? new math.ConstantNode(values[name]) : child;
  });
  return node.toString();
}

/** Evaluates a closed expression (no names but mathjs constants) to a finite number, or throws. */
export function evaluateClosed(text: string): number {
  const value = math.evaluate(text) as unknown;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`${JSON.stringify(text)} is not a finite number`);
  return value;
}
