import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parameterCounts } from '../../src/model/config';
import { classDtypeProblems } from '../../src/plan/dtype';
import { resolveShape } from '../../src/report/paper_shapes';
import { loadRecipe, recipeHash } from '../../src/recipe';

const recipesDir = path.join(__dirname, '..', '..', 'recipes');
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-recipe-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A minimal valid recipe, as YAML text, with `overrides` lines appended into sections by the caller. */
function minimal(sections: { model?: string; data?: string; train?: string; tokenizer?: string; routing?: string; top?: string } = {}): string {
  return [
    sections.top ?? '',
    'model:',
    '  hidden_size: 64',
    '  num_hidden_layers: 2',
    '  num_attention_heads: 4',
    '  num_experts: 4',
    '  moe_intermediate_size: 32',
    sections.model ?? '',
    'data:',
    '  seq_len: 32',
    sections.data ?? '',
    'train:',
    '  batch_size: 4',
    '  lr: 1e-3',
    sections.train ?? '  max_steps: 100',
    'tokenizer:',
    sections.tokenizer ?? '  type: byte',
    'routing:',
    sections.routing ?? '  mode: dense',
  ].join('\n');
}

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

describe('shipped recipes', () => {
  const files = fs.readdirSync(recipesDir).filter((f) => /\.(ya?ml|json)$/.test(f));
  test('the expected recipes are shipped', () => {
    expect(files.sort()).toEqual(
      expect.arrayContaining([
        'tiny.yaml', 'tiny-dense.yaml', 'tiny-smoe.yaml', 'small.yaml', 'dense-baseline.yaml', 'smoe-baseline.yaml',
        'ds-moe-1b.yaml', 'ds-moe-3b.yaml', 'ds-moe-6b.yaml',
      ]),
    );
  });
  test.each(files)('%s loads and validates', (file) => {
    const recipe = loadRecipe(path.join(recipesDir, file));
    expect(recipe.name).toBe(file.replace(/\.yaml$/, ''));
    expect(recipe.model.vocab_size).toBe(recipe.tokenizer.vocab_size);
    expect(recipe.train.max_steps).toBeGreaterThan(0);
  });

  test('tiny is the documented demo shape; small is 10–30 M parameters', () => {
    const tiny = loadRecipe(path.join(recipesDir, 'tiny.yaml'));
    expect(tiny.model).toMatchObject({ vocab_size: 257, hidden_size: 128, num_experts: 8, moe_intermediate_size: 64 });
    expect(tiny.train.min_lr).toBeCloseTo(3e-4, 12);
    expect(tiny.model.max_position_embeddings).toBe(64);
    const small = parameterCounts(loadRecipe(path.join(recipesDir, 'small.yaml')).model).total;
    expect(small).toBeGreaterThan(10e6);
    expect(small).toBeLessThan(30e6);
  });

  test('dense baselines match the total parameters of their DS-MoE recipes up to the router', () => {
    for (const [moe, dense] of [['tiny', 'tiny-dense'], ['small', 'dense-baseline']]) {
      const a = loadRecipe(path.join(recipesDir, `${moe}.yaml`)).model;
      const b = loadRecipe(path.join(recipesDir, `${dense}.yaml`)).model;
      expect(b.num_experts).toBe(1);
      expect(b.moe_intermediate_size).toBe(a.num_experts * a.moe_intermediate_size);
      const routerDifference = (a.num_experts - 1) * a.hidden_size * a.num_hidden_layers;
      expect(parameterCounts(a).total - parameterCounts(b).total).toBe(routerDifference);
    }
  });

  test('paper shapes: hidden sizes, layers, experts, alpha; tokens budget gives max_steps', () => {
    const shapes: [string, number, number, number, number][] = [
      ['ds-moe-1b', 2048, 24, 256, 6.3e-4],
      ['ds-moe-3b', 3072, 28, 384, 4e-4],
      ['ds-moe-6b', 4096, 36, 512, 2e-4],
    ];
    for (const [name, d, layers, width, alpha] of shapes) {
      const r = loadRecipe(path.join(recipesDir, `${name}.yaml`));
      expect(r.model).toMatchObject({ hidden_size: d, num_hidden_layers: layers, num_experts: 32, moe_intermediate_size: width });
      expect(d / r.model.num_attention_heads).toBe(128);
      expect(r.routing.mi_alpha).toBe(alpha);
      const tokensPerStep = r.train.batch_size * r.train.grad_accum * r.data.seq_len;
      expect(r.train.max_steps).toBe(Math.ceil((20 * parameterCounts(r.model).total) / tokensPerStep));
    }
  });

  test("paper shapes with MoA: the paper's attention experts over 32 heads, otherwise the plain recipe; the same as report --shape's", () => {
    const shapes: [string, number, number, number, number][] = [
      // size, attention experts, heads each, head dim, α_attention
      ['1b', 16, 2, 64, 3.5e-4],
      ['3b', 8, 4, 96, 2e-4],
      ['6b', 8, 4, 128, 2e-4],
    ];
    for (const [size, A, Nh, hd, alpha] of shapes) {
      const plain = loadRecipe(path.join(recipesDir, `ds-moe-${size}.yaml`));
      const moa = loadRecipe(path.join(recipesDir, `ds-moe-${size}-moa.yaml`));
      expect(moa.model).toEqual({ ...plain.model, num_attention_heads: 32, num_key_value_heads: 32, attention_experts: A, heads_per_attention_expert: Nh });
      expect(moa.model.hidden_size / moa.model.num_attention_heads).toBe(hd);
      expect(moa.routing).toEqual({ ...plain.routing, mi_alpha_attention: alpha });
      expect(moa.data).toEqual(plain.data);
      // The schedule is the plain recipe's; its step count follows the token budget, 20 × params.
      expect({ ...moa.train, max_steps: 0, warmup_steps: 0 }).toEqual({ ...plain.train, max_steps: 0, warmup_steps: 0 });
      // q/k/v/o keep their d × d sizes: the attention routers are the only new parameters.
      const L = moa.model.num_hidden_layers;
      expect(parameterCounts(moa.model).total - parameterCounts(plain.model).total).toBe(L * A * moa.model.hidden_size);
      // Every quantized --attn-dtype fits: an attention expert's W_o rows (N_h × head dim) are whole blocks of 64.
      expect(classDtypeProblems(moa.model, { experts: 'q2_a', attention: 'q2_a' })).toEqual([]);
      // `dsmoe report --shape ds-moe-<size>-moa` runs the same model (its vocabulary and context are the report's).
      const shape = resolveShape(`ds-moe-${size}-moa`);
      const { vocab_size: _v, max_position_embeddings: _m, num_experts_per_tok: _k, ...model } = moa.model;
      expect(shape.config).toMatchObject(model);
    }
  });

  test('smoe baselines train top-2 with a balancing loss', () => {
    for (const name of ['smoe-baseline', 'tiny-smoe']) {
      const r = loadRecipe(path.join(recipesDir, `${name}.yaml`));
      expect(r.routing).toMatchObject({ mode: 'topk', top_k: 2, balance_alpha: 0.01 });
    }
  });
});

describe('expressions', () => {
  test('evaluated in dependency order, with params and vocab_size, defaults filled', () => {
    const file = write(
      'expr.yaml',
      minimal({
        model: '  num_key_value_heads: "num_attention_heads / 2"',
        train: '  tokens: "params / 100"\n  eval_tokens: "2 * seq_len"\n  warmup_steps: "round(max_steps / 10)"',
        tokenizer: '  type: bpe\n  vocab_size: "2 ^ 9"',
      }),
    );
    const r = loadRecipe(file);
    expect(r.model.num_key_value_heads).toBe(2);
    expect(r.model.vocab_size).toBe(512);
    // Independent count: embed 512·64; per layer q,k,v,o + biases, router, norms, experts; final norm.
    const d = 64, hd = 16, qkv = (4 + 2 * 2) * hd;
    const perLayer = qkv * d + qkv + 4 * hd * d + 4 * d + 2 * d + 4 * 3 * d * 32;
    const params = 512 * d + d + 2 * perLayer;
    expect(parameterCounts(r.model).total).toBe(params);
    const maxSteps = Math.ceil(params / 100 / (4 * 1 * 32));
    expect(r.train.max_steps).toBe(maxSteps);
    expect(r.train.warmup_steps).toBe(Math.round(maxSteps / 10));
    expect(r.train.eval_tokens).toBe(64);
    expect(r.model.max_position_embeddings).toBe(32); // default "seq_len"
    expect(r.model.num_experts_per_tok).toBe(2); // default "min(2, num_experts)"
    expect(r.name).toBe('expr'); // default: the file's base name
    expect(r.data.corpus).toBe('default');
  });

  test('JSON recipes work too, and the hash depends on content, not on the file name', () => {
    const yamlFile = write('same.yaml', minimal());
    const asJson = JSON.stringify({
      name: 'same',
      model: { hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_experts: 4, moe_intermediate_size: 32 },
      data: { seq_len: 32 },
      train: { batch_size: 4, lr: 0.001, max_steps: 100 },
      tokenizer: { type: 'byte' },
      routing: { mode: 'dense' },
    });
    const jsonFile = write('other.json', asJson);
    expect(recipeHash(loadRecipe(jsonFile))).toBe(recipeHash(loadRecipe(yamlFile)));
    const changed = write('same2.yaml', minimal({ top: 'name: same' }).replace('lr: 1e-3', 'lr: 2e-3'));
    expect(recipeHash(loadRecipe(changed))).not.toBe(recipeHash(loadRecipe(yamlFile)));
    expect(recipeHash(loadRecipe(yamlFile))).toMatch(/^[0-9a-f]{64}$/);
  });

  test('granularity G splits the experts: E·G experts of width I/G, k·G per token, equal total and active expert parameters', () => {
    const coarse = loadRecipe(write('g1.yaml', minimal({ routing: '  mode: topk\n  top_k: 2' })));
    const fine = loadRecipe(write('g4.yaml', minimal({ model: '  granularity: 4', routing: '  mode: topk\n  top_k: 2' })));
    expect(fine.model).toMatchObject({ num_experts: 16, moe_intermediate_size: 8, num_experts_per_tok: 8 });
    expect(fine.routing.top_k).toBe(8);
    expect(fine.granularity).toBe(4);
    expect(coarse.granularity).toBeUndefined();
    const a = parameterCounts(coarse.model);
    const b = parameterCounts(fine.model);
    const routerGrowth = 2 * (16 - 4) * 64; // 2 layers, E·d router rows
    expect(b.total - a.total).toBe(routerGrowth);
    expect(b.activePerToken(8) - a.activePerToken(2)).toBe(routerGrowth);
    // `params` in expressions is the split model's; the written names (num_experts) are the fields as written.
    const budget = loadRecipe(write('g4tokens.yaml', minimal({ model: '  granularity: 4\n  num_experts_per_tok: "num_experts / 2"', train: '  tokens: "params"' })));
    expect(budget.model.num_experts_per_tok).toBe(8);
    expect(budget.train.max_steps).toBe(Math.ceil(b.total / (4 * 32)));
  });

  test('SMoE routing options are read, and left out of the resolved recipe (and its hash) at their defaults', () => {
    const base = loadRecipe(write('smoe.yaml', minimal({ top: 'name: smoe', routing: '  mode: topk' })));
    const defaults = loadRecipe(
      write('smoe-defaults.yaml', minimal({ top: 'name: smoe', model: '  granularity: 1', routing: '  mode: topk\n  softmax: before_topk\n  z_loss_alpha: 0' })),
    );
    expect(recipeHash(defaults)).toBe(recipeHash(base));
    expect(Object.keys(defaults.routing).sort()).toEqual(['balance_alpha', 'mi_alpha', 'mode', 'top_k']);
    const options = loadRecipe(write('smoe-after.yaml', minimal({ top: 'name: smoe', routing: '  mode: topk\n  softmax: after_topk\n  z_loss_alpha: 1e-3' })));
    expect(options.routing).toMatchObject({ softmax: 'after_topk', z_loss_alpha: 1e-3 });
    expect(recipeHash(options)).not.toBe(recipeHash(base));
    // The z-loss applies to DS-MoE too (it only shrinks router logits).
    expect(loadRecipe(write('dense-z.yaml', minimal({ routing: '  mode: dense\n  z_loss_alpha: 1e-3' }))).routing.z_loss_alpha).toBe(1e-3);
  });

  test('corpus paths are resolved from the recipe folder', () => {
    fs.writeFileSync(path.join(dir, 'mine.txt'), 'hello');
    const r = loadRecipe(write('corpus.yaml', minimal({ data: '  corpus: [mine.txt]' })));
    expect(r.data.corpus).toEqual([path.join(dir, 'mine.txt')]);
  });
});

describe('errors name the file, the field, the value and what was expected', () => {
  const cases: [string, () => string, RegExp][] = [
    ['non-numeric string', () => write('x.yaml', minimal().replace('lr: 1e-3', 'lr: abc')), /x\.yaml: train\.lr: expected a positive number, got "abc" \(unknown name "abc"; names available: .*batch_size/],
    ['negative learning rate', () => write('neg.yaml', minimal().replace('lr: 1e-3', 'lr: -1')), /neg\.yaml: train\.lr: expected a positive number, got -1/],
    ['boolean where a number goes', () => write('bool.yaml', minimal().replace('batch_size: 4', 'batch_size: true')), /train\.batch_size: expected a positive integer or an expression, got true/],
    ['fractional integer field', () => write('frac.yaml', minimal().replace('moe_intermediate_size: 32', 'moe_intermediate_size: "hidden_size / 3"')), /model\.moe_intermediate_size: expected a positive integer, got 21\.3+\d* \(from "hidden_size \/ 3"\)/],
    ['unknown field', () => write('unk.yaml', minimal().replace('lr: 1e-3', 'lr: 1e-3\n  learning_rate: 3')), /unk\.yaml: train\.learning_rate: unknown field; allowed: batch_size, grad_accum, max_steps, tokens, lr/],
    ['unknown section', () => write('sec.yaml', minimal() + '\noptimizer:\n  lr: 1'), /sec\.yaml: optimizer: unknown field; allowed: name, seed, model, routing, data, tokenizer, train/],
    ['cycle', () => write('cyc.yaml', minimal().replace('lr: 1e-3', 'lr: "min_lr * 10"\n  min_lr: "lr / 10"')), /train\.lr: circular reference: lr → min_lr → lr/],
    ['cycle through params', () => write('cyc2.yaml', minimal().replace('hidden_size: 64', 'hidden_size: "params / 1000"')), /model\.hidden_size: circular reference: hidden_size → params → hidden_size/],
    ['bad enum', () => write('enum.yaml', minimal({ routing: '  mode: sparse' })), /routing\.mode: expected one of dense, topk, got "sparse"/],
    ['bad boolean', () => write('tie.yaml', minimal({ model: '  tie_word_embeddings: "yes"' })), /model\.tie_word_embeddings: expected true or false, got "yes"/],
    ['missing required field', () => write('req.yaml', minimal().replace('  seq_len: 32\n', '')), /req\.yaml: data\.seq_len: required field is missing/],
    ['missing step budget', () => write('steps.yaml', minimal({ train: '' })), /train\.max_steps: required field is missing \(or give train\.tokens\)/],
    ['both step budgets', () => write('both.yaml', minimal({ train: '  max_steps: 5\n  tokens: 1000' })), /train: give max_steps or tokens, not both/],
    ['model inconsistency', () => write('heads.yaml', minimal().replace('num_attention_heads: 4', 'num_attention_heads: 5')), /heads\.yaml: model: hidden_size \(64\) must be divisible by num_attention_heads \(5\)/],
    ['model vocab_size is not a recipe field', () => write('voc.yaml', minimal({ model: '  vocab_size: 300' })), /model\.vocab_size: unknown field/],
    ['bpe vocab too small', () => write('bpe.yaml', minimal({ tokenizer: '  type: bpe\n  vocab_size: 100' })), /tokenizer\.vocab_size: expected an integer in \[257, 1048576\], got 100/],
    ['beta out of range', () => write('beta.yaml', minimal({ train: '  max_steps: 5\n  beta2: 1' })), /train\.beta2: expected a number in \[0, 1\), got 1/],
    ['min_lr above lr', () => write('minlr.yaml', minimal({ train: '  max_steps: 5\n  min_lr: 1' })), /train\.min_lr: expected at most train\.lr \(0\.001\), got 1/],
    ['context shorter than seq_len', () => write('ctx.yaml', minimal({ model: '  max_position_embeddings: 16' })), /model\.max_position_embeddings: expected at least data\.seq_len \(32\), got 16/],
    ['missing corpus file', () => write('nocorpus.yaml', minimal({ data: '  corpus: missing.txt' })), /nocorpus\.yaml: data\.corpus: no such file .*missing\.txt/],
    ['corpus of the wrong kind', () => write('kind.yaml', minimal({ data: '  corpus: [data.csv]' })), /data\.corpus\[0\]: expected a \.txt or \.jsonl file, got "data\.csv"/],
    ['invalid YAML', () => write('bad.yaml', 'model: [1, 2\n'), /bad\.yaml: invalid YAML:/],
    ['not a mapping', () => write('list.yaml', '- 1\n- 2\n'), /list\.yaml: expected a mapping of recipe sections/],
    ['unparsable expression', () => write('parse.yaml', minimal().replace('lr: 1e-3', 'lr: "3e-3 *"')), /train\.lr: expected a positive number, got "3e-3 \*" \(not a valid expression/],
    ['assignment in an expression', () => write('assign.yaml', minimal().replace('lr: 1e-3', 'lr: "batch_size = 3"')), /train\.lr: .*may not assign/],
    ['missing file', () => path.join(dir, 'absent.yaml'), /absent\.yaml: cannot read the recipe \(ENOENT\)/],
    ['granularity that does not divide the expert width', () => write('g3.yaml', minimal({ model: '  granularity: 3' })), /g3\.yaml: model\.granularity: expected a divisor of model\.moe_intermediate_size \(32\), got 3/],
    ['granularity of zero', () => write('g0.yaml', minimal({ model: '  granularity: 0' })), /g0\.yaml: model\.granularity: expected a positive integer, got 0/],
    ['softmax after top-k on dense training', () => write('sm.yaml', minimal({ routing: '  mode: dense\n  softmax: after_topk' })), /sm\.yaml: routing\.softmax: after_topk applies to routing\.mode topk \(DS-MoE trains on every expert\), got mode dense/],
    ['unknown softmax placement', () => write('sm2.yaml', minimal({ routing: '  mode: topk\n  softmax: later' })), /routing\.softmax: expected one of before_topk, after_topk, got "later"/],
    ['negative z-loss weight', () => write('z.yaml', minimal({ routing: '  mode: topk\n  z_loss_alpha: -1' })), /z\.yaml: routing\.z_loss_alpha: expected a non-negative number, got -1/],
  ];
  test.each(cases)('%s', (_label, make, message) => {
    expect(() => loadRecipe(make())).toThrow(message);
  });
});

describe("Megrez2's dense first layers (model.first_k_dense_replace, model.intermediate_size)", () => {
  test('the width is left out of the resolved recipe at its default E·I and without dense layers; another width is kept', () => {
    const plain = loadRecipe(write('plain.yaml', minimal()));
    const dense = loadRecipe(write('dense.yaml', minimal({ model: '  first_k_dense_replace: 1' })));
    const atDefault = loadRecipe(write('dense.yaml', minimal({ model: '  first_k_dense_replace: 1\n  intermediate_size: "num_experts * moe_intermediate_size"' })));
    expect(plain.model).not.toHaveProperty('intermediate_size');
    expect(dense.model).toMatchObject({ first_k_dense_replace: 1 });
    expect(dense.model).not.toHaveProperty('intermediate_size');
    expect(recipeHash(atDefault)).toBe(recipeHash(dense));
    const wide = loadRecipe(write('dense-wide.yaml', minimal({ model: '  first_k_dense_replace: 1\n  intermediate_size: 96' })));
    expect(wide.model.intermediate_size).toBe(96);
    // the params variable counts the dense layer's MLP: 3·64·96 in place of the router and 4 experts of 3·64·32
    expect(parameterCounts(plain.model).total - parameterCounts(wide.model).total).toBe(4 * 64 + 4 * 3 * 64 * 32 - 3 * 64 * 96);
  });

  test('a width without dense layers is refused in one line', () => {
    expect(() => loadRecipe(write('no-dense.yaml', minimal({ model: '  intermediate_size: 96' })))).toThrow(
      /model\.intermediate_size: only meaningful with dense layers, but model\.first_k_dense_replace is 0/,
    );
  });
});

describe('attention experts (MoA, docs/design.md §12)', () => {
  test('absent or 0: no MoA field in the resolved recipe, and the hash is the one without them', () => {
    const plain = loadRecipe(write('plain.yaml', minimal()));
    const zero = loadRecipe(write('plain.yaml', minimal({ model: '  attention_experts: 0' })));
    for (const r of [plain, zero]) {
      expect(r.model).not.toHaveProperty('attention_experts');
      expect(r.model).not.toHaveProperty('heads_per_attention_expert');
      expect(r.routing).not.toHaveProperty('mi_alpha_attention');
    }
    expect(recipeHash(zero)).toBe(recipeHash(plain));
  });

  test('heads per expert defaults to H / A, mi_alpha_attention to mi_alpha; the router counts in params', () => {
    const moa = loadRecipe(write('moa.yaml', minimal({ model: '  attention_experts: 2', routing: '  mode: dense\n  mi_alpha: 3e-3' })));
    expect(moa.model.attention_experts).toBe(2);
    expect(moa.model.heads_per_attention_expert).toBe(2);
    expect(moa.routing.mi_alpha_attention).toBe(3e-3);
    const plain = loadRecipe(write('plain.yaml', minimal()));
    expect(parameterCounts(moa.model).total - parameterCounts(plain.model).total).toBe(2 * 2 * 64); // L · A · d
    const given = loadRecipe(write('given.yaml', minimal({ model: '  attention_experts: 4\n  heads_per_attention_expert: 1', routing: '  mode: dense\n  mi_alpha_attention: 2e-4' })));
    expect([given.model.heads_per_attention_expert, given.routing.mi_alpha_attention]).toEqual([1, 2e-4]);
    expect(recipeHash(given)).not.toBe(recipeHash(plain));
  });

  test('tiny-moa is tiny plus 4 attention experts of one head', () => {
    const tiny = loadRecipe(path.join(recipesDir, 'tiny.yaml'));
    const moa = loadRecipe(path.join(recipesDir, 'tiny-moa.yaml'));
    expect(moa.model).toEqual({ ...tiny.model, attention_experts: 4, heads_per_attention_expert: 1 });
    expect(moa.train).toEqual(tiny.train);
    expect(moa.routing).toEqual({ ...tiny.routing, mi_alpha_attention: 1e-2 });
  });

  const cases: [string, () => string, RegExp][] = [
    ['heads without experts', () => write('m1.yaml', minimal({ model: '  heads_per_attention_expert: 2' })), /m1\.yaml: model\.heads_per_attention_expert: only meaningful with attention experts, but model\.attention_experts is 0/],
    ['attention alpha without experts', () => write('m2.yaml', minimal({ routing: '  mode: dense\n  mi_alpha_attention: 1e-3' })), /m2\.yaml: routing\.mi_alpha_attention: only meaningful with attention experts/],
    ['experts that do not divide the heads', () => write('m3.yaml', minimal({ model: '  attention_experts: 3' })), /m3\.yaml: model\.attention_experts: expected a divisor of model\.num_attention_heads \(4\), got 3/],
    ['heads that do not multiply to H', () => write('m4.yaml', minimal({ model: '  attention_experts: 2\n  heads_per_attention_expert: 1' })), /m4\.yaml: model\.heads_per_attention_expert: expected num_attention_heads \/ attention_experts = 2 \(A · N_h = H\), got 1/],
    ['negative experts', () => write('m5.yaml', minimal({ model: '  attention_experts: -1' })), /m5\.yaml: model\.attention_experts: expected a non-negative integer, got -1/],
    ['sparse training', () => write('m6.yaml', minimal({ model: '  attention_experts: 2', routing: '  mode: topk' })), /m6\.yaml: routing\.mode: attention experts \(model\.attention_experts 2\) train densely only, expected dense, got "topk"/],
  ];
  test.each(cases)('%s is one line naming the field', (_label, make, message) => {
    expect(() => loadRecipe(make())).toThrow(message);
    try {
      loadRecipe(make());
    } catch (error) {
      expect((error as Error).message).not.toContain('\n');
    }
  });
});
