/**
 * Reads a recipe (YAML or JSON), evaluates its expressions and validates every field before any work starts.
 * Errors are one line: `<file>: <section>.<field>: expected ..., got ...`.
 */
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { UserError } from '../errors';
import { configProblems, parameterCounts, splitExperts, withoutDefaults, type ModelConfig } from '../model/config';
import { FieldError, resolveVariables, type Variable } from './expressions';
import { BYTE_VOCAB_SIZE, SECTIONS, TOP_LEVEL, type FieldSpec, type SectionName } from './schema';
import type { Recipe } from './types';
import { isMapping, show, type Raw } from './raw_values';

function parseFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UserError(`${file}: cannot read the recipe (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (file.toLowerCase().endsWith('.json')) {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new UserError(`${file}: invalid JSON: ${(error as Error).message}`);
    }
  }
  try {
    return YAML.parse(text, { prettyErrors: false });
  } catch (error) {
    throw new UserError(`${file}: invalid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
}

/** Rejects fields the schema does not know, listing those it does. */
function checkKnownFields(file: string, where: string, raw: Raw, allowed: string[]): void {
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) {
      const field = where ? `${where}.${key}` : key;
      throw new UserError(`${file}: ${field}: unknown field; allowed: ${allowed.join(', ')}`);
    }
  }
}

/** Type-checks a non-numeric field (numbers are checked when evaluated) and returns its value or default. */
function readPlainField(file: string, field: string, spec: FieldSpec, raw: unknown): unknown {
  const value = raw === undefined ? (spec as { default?: unknown }).default : raw;
  if (value === undefined) throw new UserError(`${file}: ${field}: required field is missing`);
  switch (spec.kind) {
    case 'enum':
      if (typeof value !== 'string' || !spec.values.includes(value)) {
        throw new UserError(`${file}: ${field}: expected one of ${spec.values.join(', ')}, got ${show(value)}`);
      }
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') throw new UserError(`${file}: ${field}: expected true or false, got ${show(value)}`);
      return value;
    case 'string':
      if (typeof value !== 'string' || (spec.pattern && !spec.pattern.test(value))) {
        throw new UserError(`${file}: ${field}: expected ${spec.expected ?? 'a string'}, got ${show(value)}`);
      }
      return value;
    case 'corpus':
      return value;
    case 'number':
      if (typeof value === 'number') return value;
      if (typeof value === 'string' && value.trim() !== '') return value;
      throw new UserError(`${file}: ${field}: expected ${spec.check.expected} or an expression, got ${show(value)}`);
  }
}

/** `corpus: default | path | [paths]` → 'default' or absolute paths (relative ones are from the recipe's folder). */
function resolveCorpus(file: string, value: unknown): 'default' | string[] {
  if (value === 'default') return 'default';
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || !list.every((p) => typeof p === 'string' && p !== '')) {
    throw new UserError(`${file}: data.corpus: expected "default", a file path or a list of file paths, got ${show(value)}`);
  }
  const base = path.dirname(path.resolve(file));
  return list.map((entry: string, i) => {
    const field = typeof value === 'string' ? 'data.corpus' : `data.corpus[${i}]`;
    const absolute = path.resolve(base, entry);
    if (!/\.(txt|jsonl)$/i.test(absolute)) {
      throw new UserError(`${file}: ${field}: expected a .txt or .jsonl file, got ${show(entry)}`);
    }
    if (!fs.existsSync(absolute) || !fs.statSync(absolute).isFile()) {
      throw new UserError(`${file}: ${field}: no such file ${absolute}`);
    }
    return absolute;
  });
}

/** Loads, evaluates and validates a recipe file. */
export function loadRecipe(file: string): Recipe {
  return recipeFromDocument(parseFile(file), file);
}

/**
 * Evaluates and validates a parsed recipe document as if it had been read from `file` (errors name that file,
 * relative corpus paths are from its folder). A study evaluates its points' recipes this way before writing them.
 */
export function recipeFromDocument(document: unknown, file: string): Recipe {
  if (!isMapping(document)) throw new UserError(`${file}: expected a mapping of recipe sections, got ${show(document)}`);
  const sectionNames = Object.keys(SECTIONS) as SectionName[];
  checkKnownFields(file, '', document, [...Object.keys(TOP_LEVEL), ...sectionNames]);

  const plain = new Map<string, unknown>(); // non-numeric values, by "section.field"
  const variables = new Map<string, Variable>(); // numeric fields, by leaf name
  const addField = (field: string, leaf: string, spec: FieldSpec, raw: unknown) => {
    if (spec.kind === 'number') {
      const value = readPlainField(file, field, spec, raw) as number | string;
      variables.set(leaf, typeof value === 'number' ? { field, literal: value, check: spec.check } : { field, expression: value, check: spec.check });
    } else {
      plain.set(field, readPlainField(file, field, spec, raw));
    }
  };

  addField('name', 'name', TOP_LEVEL.name, document.name ?? path.basename(file).replace(/\.(ya?ml|json)$/i, ''));
  addField('seed', 'seed', TOP_LEVEL.seed, document.seed);
  for (const section of sectionNames) {
    const raw = document[section] ?? {};
    if (!isMapping(raw)) throw new UserError(`${file}: ${section}: expected a mapping of fields, got ${show(raw)}`);
    const specs = SECTIONS[section];
    checkKnownFields(file, section, raw, Object.keys(specs));
    for (const [leaf, spec] of Object.entries(specs)) {
      if (section === 'train' && (leaf === 'max_steps' || leaf === 'tokens')) continue;
      addField(`${section}.${leaf}`, leaf, spec, raw[leaf]);
    }
  }
  addStepBudget(file, variables, (document.train ?? {}) as Raw);

  // vocab_size is the tokenizer's; params is the model's total parameter count (it depends on vocab_size).
  const tokenizerType = plain.get('tokenizer.type') as 'byte' | 'bpe';
  if (tokenizerType === 'byte') variables.set('vocab_size', { field: 'vocab_size', literal: BYTE_VOCAB_SIZE });
  const modelLeaves = Object.keys(SECTIONS.model).filter((leaf) => SECTIONS.model[leaf].kind === 'number');
  const modelFrom = (values: Map<string, number>): ModelConfig => {
    const model: Record<string, unknown> = { vocab_size: values.get('vocab_size') };
    for (const leaf of modelLeaves) if (leaf !== 'granularity') model[leaf] = values.get(leaf);
    model.tie_word_embeddings = plain.get('model.tie_word_embeddings');
    model.pre_gate = plain.get('model.pre_gate');
    // Plain attention has no heads per expert (a value given anyway is refused in checkMoA).
    if (model.attention_experts === 0) delete model.heads_per_attention_expert;
    // Defaults left out, so a recipe without Megrez2's or MoA's fields resolves (and hashes) exactly as before them.
    return withoutDefaults(splitExperts(model as unknown as ModelConfig, values.get('granularity')!));
  };
  variables.set('params', {
    field: 'params',
    computed: { dependsOn: ['vocab_size', ...modelLeaves], compute: (values) => parameterCounts(modelFrom(values)).total },
  });

  let values: Map<string, number>;
  try {
    values = resolveVariables(variables);
  } catch (error) {
    if (error instanceof FieldError) throw new UserError(`${file}: ${error.field}: ${error.message}`);
    throw error;
  }

  const granularity = values.get('granularity')!;
  const width = values.get('moe_intermediate_size')!;
  if (width % granularity !== 0) {
    throw new UserError(`${file}: model.granularity: expected a divisor of model.moe_intermediate_size (${width}), got ${granularity}`);
  }
  const softmax = plain.get('routing.softmax') as 'before_topk' | 'after_topk';
  const zLossAlpha = values.get('z_loss_alpha')!;
  // The fields added after the recipe hash was pinned are left out at their defaults, so existing recipes (and the
  // checkpoints that record their hashes) resolve exactly as before them.
  const recipe: Recipe = {
    name: plain.get('name') as string,
    file: path.resolve(file),
    seed: values.get('seed')!,
    model: modelFrom(values),
    ...(granularity !== 1 ? { granularity } : {}),
    routing: {
      mode: plain.get('routing.mode') as 'dense' | 'topk',
      mi_alpha: values.get('mi_alpha')!,
      top_k: values.get('top_k')! * granularity,
      balance_alpha: values.get('balance_alpha')!,
      ...(softmax !== 'before_topk' ? { softmax } : {}),
      ...(zLossAlpha !== 0 ? { z_loss_alpha: zLossAlpha } : {}),
      ...(values.get('attention_experts')! > 0 ? { mi_alpha_attention: values.get('mi_alpha_attention')! } : {}),
    },
    data: {
      corpus: resolveCorpus(file, plain.get('data.corpus')),
      text_field: plain.get('data.text_field') as string,
      validation_fraction: values.get('validation_fraction')!,
      seq_len: values.get('seq_len')!,
    },
    tokenizer: { type: tokenizerType, vocab_size: values.get('vocab_size')! },
    train: {
      batch_size: values.get('batch_size')!,
      grad_accum: values.get('grad_accum')!,
      max_steps: values.get('max_steps')!,
      lr: values.get('lr')!,
      min_lr: values.get('min_lr')!,
      warmup_steps: values.get('warmup_steps')!,
      weight_decay: values.get('weight_decay')!,
      beta1: values.get('beta1')!,
      beta2: values.get('beta2')!,
      adam_eps: values.get('adam_eps')!,
      grad_clip: values.get('grad_clip')!,
      log_every: values.get('log_every')!,
      eval_every: values.get('eval_every')!,
      eval_tokens: values.get('eval_tokens')!,
      checkpoint_every: values.get('checkpoint_every')!,
      ...(plain.get('train.compute_dtype') === 'bf16' ? { compute_dtype: 'bf16' as const } : {}),
    },
  };
  checkMoA(file, document, values, recipe);
  if (values.get('first_k_dense_replace') === 0 && isMapping(document.model) && (document.model as Raw).intermediate_size !== undefined) {
    throw new UserError(`${file}: model.intermediate_size: only meaningful with dense layers, but model.first_k_dense_replace is 0; remove it or set first_k_dense_replace`);
  }
  checkConsistency(file, recipe);
  return recipe;
}

/**
 * MoA's fields (docs/design.md §12): at attention_experts 0 the other two may not be given; otherwise the experts
 * split the query heads evenly, and they train densely only.
 */
function checkMoA(file: string, document: Raw, values: Map<string, number>, recipe: Recipe): void {
  const A = values.get('attention_experts')!;
  const H = values.get('num_attention_heads')!;
  const given = (section: 'model' | 'routing', leaf: string) => isMapping(document[section]) && (document[section] as Raw)[leaf] !== undefined;
  if (A === 0) {
    for (const [section, leaf] of [['model', 'heads_per_attention_expert'], ['routing', 'mi_alpha_attention']] as const) {
      if (given(section, leaf)) {
        throw new UserError(`${file}: ${section}.${leaf}: only meaningful with attention experts, but model.attention_experts is 0 (plain attention); remove it or set attention_experts`);
      }
    }
    return;
  }
  const Nh = values.get('heads_per_attention_expert')!;
  if (!given('model', 'heads_per_attention_expert') && H % A !== 0) {
    throw new UserError(`${file}: model.attention_experts: expected a divisor of model.num_attention_heads (${H}), got ${A}`);
  }
  if (A * Nh !== H) {
    throw new UserError(`${file}: model.heads_per_attention_expert: expected num_attention_heads / attention_experts = ${H / A} (A · N_h = H), got ${Nh}`);
  }
  if (recipe.routing.mode === 'topk') {
    throw new UserError(`${file}: routing.mode: attention experts (model.attention_experts ${A}) train densely only, expected dense, got "topk"`);
  }
}

/** `max_steps`, or `tokens` from which max_steps = ceil(tokens / (batch_size · grad_accum · seq_len)). */
function addStepBudget(file: string, variables: Map<string, Variable>, train: Raw): void {
  const spec = SECTIONS.train;
  const given = (['max_steps', 'tokens'] as const).filter((leaf) => train[leaf] !== undefined);
  if (given.length === 0) throw new UserError(`${file}: train.max_steps: required field is missing (or give train.tokens)`);
  if (given.length === 2) throw new UserError(`${file}: train: give max_steps or tokens, not both`);
  if (given[0] === 'max_steps') {
    const value = readPlainField(file, 'train.max_steps', spec.max_steps, train.max_steps) as number | string;
    const check = (spec.max_steps as { check: Variable['check'] }).check;
    variables.set('max_steps', typeof value === 'number' ? { field: 'train.max_steps', literal: value, check } : { field: 'train.max_steps', expression: value, check });
  } else {
    const value = readPlainField(file, 'train.tokens', spec.tokens, train.tokens) as number | string;
    const check = (spec.tokens as { check: Variable['check'] }).check;
    variables.set('tokens', typeof value === 'number' ? { field: 'train.tokens', literal: value, check } : { field: 'train.tokens', expression: value, check });
    variables.set('max_steps', {
      field: 'train.max_steps',
      expression: 'ceil(tokens / (batch_size * grad_accum * seq_len))',
      check: (spec.max_steps as { check: Variable['check'] }).check,
    });
  }
}

/** Rules that involve several fields. */
function checkConsistency(file: string, recipe: Recipe): void {
  for (const problem of configProblems(recipe.model)) throw new UserError(`${file}: model: ${problem}`);
  const { model, data, train, routing } = recipe;
  if (model.max_position_embeddings < data.seq_len) {
    throw new UserError(
      `${file}: model.max_position_embeddings: expected at least data.seq_len (${data.seq_len}), got ${model.max_position_embeddings}`,
    );
  }
  if (routing.softmax === 'after_topk' && routing.mode !== 'topk') {
    throw new UserError(`${file}: routing.softmax: after_topk applies to routing.mode topk (DS-MoE trains on every expert), got mode ${routing.mode}`);
  }
  if (routing.top_k > model.num_experts) {
    throw new UserError(`${file}: routing.top_k: expected at most model.num_experts (${model.num_experts}), got ${routing.top_k}`);
  }
  if (train.min_lr > train.lr) throw new UserError(`${file}: train.min_lr: expected at most train.lr (${train.lr}), got ${train.min_lr}`);
  if (train.warmup_steps > train.max_steps) {
    throw new UserError(`${file}: train.warmup_steps: expected at most train.max_steps (${train.max_steps}), got ${train.warmup_steps}`);
  }
  if (train.eval_tokens < data.seq_len) {
    throw new UserError(`${file}: train.eval_tokens: expected at least data.seq_len (${data.seq_len}), got ${train.eval_tokens}`);
  }
}
