import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { packageRoot } from '../../src/data';
import { headDim, parameterCounts } from '../../src/model/config';
import { loadStudy, withOverrides } from '../../src/study/study_file';
import { studyPoints } from '../../src/study/study_points';
import { recipeCost } from '../../src/study/study_cost';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

const tiny = path.join(packageRoot(), 'recipes', 'tiny.yaml');

function writeStudy(document: Record<string, unknown>): string {
  const file = path.join(tempDir('study-file'), 'study.yaml');
  fs.writeFileSync(file, YAML.stringify({ recipe: tiny, ...document }));
  return file;
}

function points(document: Record<string, unknown>) {
  const spec = loadStudy(writeStudy(document));
  return studyPoints(spec, { pointsDir: tempDir('study-points'), corpusFile: null });
}

describe('study points', () => {
  test('the cartesian product, first axis slowest; study variables substituted into recipe expressions', () => {
    const grid = points({
      name: 'grain',
      set: { 'train.tokens': 'tpp * params', num_experts: '8 * G', moe_intermediate_size: '64 / G', num_experts_per_tok: '2 * G', tpp: 2 },
      axes: { G: [1, 2, 4], 'routing.mode': ['dense', 'topk'], 'routing.top_k': ['num_experts_per_tok'] },
    });
    expect(grid.map((p) => p.label)).toEqual([
      'G=1 routing.mode=dense routing.top_k=num_experts_per_tok',
      'G=1 routing.mode=topk routing.top_k=num_experts_per_tok',
      'G=2 routing.mode=dense routing.top_k=num_experts_per_tok',
      'G=2 routing.mode=topk routing.top_k=num_experts_per_tok',
      'G=4 routing.mode=dense routing.top_k=num_experts_per_tok',
      'G=4 routing.mode=topk routing.top_k=num_experts_per_tok',
    ]);
    const g4 = grid[5].recipe;
    expect(g4.model).toMatchObject({ num_experts: 32, moe_intermediate_size: 16, num_experts_per_tok: 8 });
    expect(g4.routing).toMatchObject({ mode: 'topk', top_k: 8 });
    // Fine-grained at equal total and active expert width: the same active parameters up to the router.
    expect(grid[5].cost.active_params - grid[1].cost.active_params).toBe(2 * 128 * (32 - 8));
    // train.tokens = tpp · params sets max_steps = ceil(tokens / tokens per step).
    const params = parameterCounts(g4.model).total;
    expect(g4.train.max_steps).toBe(Math.ceil((2 * params) / (16 * 64)));
    expect(grid[5].document.train).toMatchObject({ tokens: '2 * params' });
    expect(grid[5].id).toMatch(/^p05-[0-9a-f]{8}$/);
    expect(new Set(grid.map((p) => p.id)).size).toBe(6);
  });

  test('cases cross the axes and apply after set; --set replaces a set entry', () => {
    const file = writeStudy({
      set: { mi_alpha: 0.01, 'train.max_steps': 600 },
      cases: [{ label: 'DS-MoE', mi_alpha: 6.3e-4 }, { label: 'SMoE', 'routing.mode': 'topk', mi_alpha: 0 }],
      axes: { num_experts: [4, 8] },
    });
    const grid = studyPoints(withOverrides(loadStudy(file), ['train.max_steps=20', 'warmup_steps=2']), { pointsDir: tempDir('study-points'), corpusFile: null });
    expect(grid.map((p) => p.label)).toEqual(['DS-MoE num_experts=4', 'DS-MoE num_experts=8', 'SMoE num_experts=4', 'SMoE num_experts=8']);
    expect(grid.map((p) => [p.recipe.routing.mode, p.recipe.routing.mi_alpha, p.recipe.model.num_experts])).toEqual([
      ['dense', 6.3e-4, 4],
      ['dense', 6.3e-4, 8],
      ['topk', 0, 4],
      ['topk', 0, 8],
    ]);
    expect(grid[0].values).toEqual({ case: 'DS-MoE', num_experts: 4 });
    expect(grid.every((p) => p.recipe.train.max_steps === 20 && p.recipe.train.warmup_steps === 2)).toBe(true);
    expect(() => withOverrides(loadStudy(file), ['num_experts=2'])).toThrow(/--set num_experts=2: model.num_experts is an axis/);
    expect(() => withOverrides(loadStudy(file), ['max_steps'])).toThrow(/--set max_steps: expected field=value/);
  });

  test('a constraint on active parameters picks the nearest integer value of its field', () => {
    const target = 200_000;
    const grid = points({
      axes: { num_experts: [4, 8, 16], num_experts_per_tok: [1, 2] },
      set: { 'routing.top_k': 'num_experts_per_tok' },
      constraint: { active_params: target, solve: 'model.moe_intermediate_size', tolerance: 0.05 },
    });
    expect(grid).toHaveLength(6);
    for (const point of grid) {
      const config = point.recipe.model;
      const active = (I: number) => parameterCounts({ ...config, moe_intermediate_size: I }).activePerToken(config.num_experts_per_tok);
      const I = config.moe_intermediate_size;
      expect(point.cost.active_params).toBe(active(I));
      expect(Math.abs(active(I) - target)).toBeLessThanOrEqual(Math.abs(active(I + 1) - target));
      expect(Math.abs(active(I) - target)).toBeLessThanOrEqual(Math.abs(active(I - 1) - target));
      expect(point.constraint).toMatchObject({ quantity: 'active_params', target, field: 'model.moe_intermediate_size', value: I });
    }
    // k = 2 halves the expert width of k = 1 at the same active parameters.
    expect(grid[1].recipe.model.moe_intermediate_size * 2).toBeCloseTo(grid[0].recipe.model.moe_intermediate_size, -1);
  });

  test('a constraint on training FLOPs sets the step count, and an unreachable one is an error naming the point', () => {
    const grid = points({ axes: { 'routing.mode': ['dense', 'topk'] }, constraint: { training_flops: 5e13, solve: 'train.max_steps' } });
    for (const point of grid) expect(Math.abs(point.cost.training_flops / 5e13 - 1)).toBeLessThan(0.05);
    // DS-MoE trains all 8 experts, SMoE 2: the same FLOPs buy SMoE more steps.
    expect(grid[1].recipe.train.max_steps).toBeGreaterThan(grid[0].recipe.train.max_steps);
    expect(() => points({ axes: { num_experts: [4] }, constraint: { active_params: 1e5, solve: 'moe_intermediate_size' } })).toThrow(
      /point num_experts=4: the nearest model.moe_intermediate_size \(1\) gives active_params .* from the target 100000/,
    );
  });

  test('a recipe error in one point names the study and the point', () => {
    expect(() => points({ axes: { num_experts: [4, 2], num_experts_per_tok: [3] } })).toThrow(
      /study\.yaml: point num_experts=4 num_experts_per_tok=3: model: num_experts_per_tok \(3\) must be at most num_experts \(4\)|study\.yaml: point num_experts=2 num_experts_per_tok=3/,
    );
  });
});

describe('the shipped studies resolve to the papers\' setups', () => {
  const shipped = (name: string) => studyPoints(loadStudy(path.join(packageRoot(), 'studies', `${name}.yaml`)), { pointsDir: tempDir('study-points'), corpusFile: null });

  test('fine-grained: granularity G gives 8G experts of width 64/G at top-2G, equal active parameters up to the router; SMoE routes softmax after top-k', () => {
    const grid = shipped('fine-grained');
    expect(grid.map((p) => p.label)).toEqual([1, 2, 4, 8].map((G) => `DS-MoE model.granularity=${G}`).concat([1, 2, 4, 8].map((G) => `SMoE softmax after top-k model.granularity=${G}`)));
    const smoe = grid.slice(4);
    smoe.forEach((point, i) => {
      const G = 2 ** i;
      expect(point.recipe.granularity).toBe(G === 1 ? undefined : G);
      expect(point.recipe.model).toMatchObject({ num_experts: 8 * G, moe_intermediate_size: 64 / G, num_experts_per_tok: 2 * G });
      expect(point.recipe.routing).toMatchObject({ mode: 'topk', top_k: 2 * G, softmax: 'after_topk', balance_alpha: 0.01 });
      const routerGrowth = 2 * 128 * 8 * (G - 1); // 2 layers × d × extra router outputs
      expect(point.cost.active_params - smoe[0].cost.active_params).toBe(routerGrowth);
      expect(point.cost.total_params - smoe[0].cost.total_params).toBe(routerGrowth);
      expect(grid[i].recipe.routing).toMatchObject({ mode: 'dense', mi_alpha: 6.3e-4 });
      expect(grid[i].recipe.routing.softmax).toBeUndefined();
    });
  });

  test('optimal-sparsity: SMoE over E × k with the balance loss 1e-2 and the router z-loss 1e-3, softmax before top-k', () => {
    const grid = shipped('optimal-sparsity');
    expect(grid).toHaveLength(12);
    for (const point of grid) {
      expect(point.recipe.routing).toMatchObject({ mode: 'topk', balance_alpha: 0.01, z_loss_alpha: 0.001 });
      expect(point.recipe.routing.softmax).toBeUndefined();
      expect(point.recipe.model.num_experts_per_tok).toBe(point.recipe.routing.top_k);
      expect(point.cost.tokens).toBe(614400);
    }
  });
});

describe('recipe cost', () => {
  test('parameters from the model config, FLOPs by a plain count of the multiply-adds', () => {
    const [point] = points({ axes: { num_experts: [8] }, set: { 'train.max_steps': 10, 'train.warmup_steps': 2 } });
    const r = point.recipe;
    const c = r.model;
    const counts = parameterCounts(c);
    expect(point.cost.total_params).toBe(counts.total);
    expect(point.cost.active_params).toBe(counts.activePerToken(2));
    const d = c.hidden_size;
    const hd = headDim(c);
    const macs = (experts: number) =>
      c.num_hidden_layers * ((c.num_attention_heads + 2 * c.num_key_value_heads) * hd * d + c.num_attention_heads * hd * d + c.num_experts * d + experts * 3 * d * c.moe_intermediate_size) + c.vocab_size * d;
    expect(point.cost.active_flops_per_token).toBe(2 * macs(2));
    const T = r.data.seq_len;
    const attention = 4 * c.num_hidden_layers * c.num_attention_heads * hd * ((T + 1) / 2);
    const tokens = 10 * r.train.batch_size * T;
    expect(point.cost.tokens).toBe(tokens);
    expect(point.cost.training_flops).toBeCloseTo(3 * (2 * macs(8) + attention) * tokens, 0);
    expect(recipeCost({ ...r, routing: { ...r.routing, mode: 'topk', top_k: 1 } }).training_flops).toBeCloseTo(3 * (2 * macs(1) + attention) * tokens, 0);
    expect(point.cost.tpp).toBeCloseTo(tokens / counts.total, 12);
  });
});
