import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { packageRoot } from '../../src/data';
import { loadStudy, recipeField } from '../../src/study/study_file';
import { removeTempDirs, tempDir } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

function study(document: unknown): string {
  const file = path.join(tempDir('study-file'), 'bad.yaml');
  fs.writeFileSync(file, YAML.stringify(document));
  return file;
}

const recipe = path.join(packageRoot(), 'recipes', 'tiny.yaml');

describe('study files', () => {
  test('fields by dotted name or bare name; other names are study variables', () => {
    expect(recipeField('model.num_experts')).toEqual({ section: 'model', leaf: 'num_experts' });
    expect(recipeField('mi_alpha')).toEqual({ section: 'routing', leaf: 'mi_alpha' });
    expect(recipeField('seed')).toEqual({ section: '', leaf: 'seed' });
    expect(recipeField('train.tokens')).toEqual({ section: 'train', leaf: 'tokens' });
    expect(recipeField('tpp')).toBeNull();
    expect(recipeField('model.num_expert')).toBeNull();
  });

  test('every studies/*.yaml loads', () => {
    const dir = path.join(packageRoot(), 'studies');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    expect(files).toEqual(expect.arrayContaining(['smoke.yaml', 'fine-grained.yaml', 'optimal-sparsity.yaml', 'ds-moe-alpha.yaml']));
    for (const file of files) expect(() => loadStudy(path.join(dir, file))).not.toThrow();
  });

  test.each([
    [{ recipe, axis: {} }, /bad\.yaml: axis: unknown field; allowed: name, recipe, set, cases, axes/],
    [{ axes: {} }, /bad\.yaml: recipe: expected the path of the base recipe/],
    [{ recipe: 'nowhere.yaml' }, /bad\.yaml: recipe: no such file .*nowhere\.yaml/],
    [{ recipe, axes: { 'model.num_expert': [2, 4] } }, /axes\.model\.num_expert: unknown recipe field/],
    [{ recipe, axes: { mode_of_routing: ['dense'] } }, /axes\.mode_of_routing: a study variable takes numbers, got "dense"/],
    [{ recipe, axes: { num_experts: 8 } }, /axes\.num_experts: expected a non-empty list of values, got 8 \(fixed values go under set:\)/],
    [{ recipe, axes: { num_experts: [8, 8] } }, /axes\.num_experts: a value is listed twice/],
    [{ recipe, set: { num_experts: 8 }, axes: { 'model.num_experts': [4] } }, /model\.num_experts: given twice/],
    [{ recipe, constraint: { active_params: 1e5, solve: 'routing.mi_alpha' } }, /constraint\.solve: expected an integer recipe field/],
    [{ recipe, constraint: { active_params: 1e5, training_flops: 1e12, solve: 'train.max_steps' } }, /constraint: expected exactly one of active_params, training_flops, got 2/],
    [{ recipe, constraint: { active_params: 1e5, solve: 'num_experts' }, axes: { num_experts: [2] } }, /constraint\.solve: model\.num_experts is also set by the study/],
    [{ recipe, cases: [{ label: 'a', num_experts: 4 }], axes: { num_experts: [2] } }, /cases: "a" sets model.num_experts, which is also an axis/],
    [{ recipe, cases: [{ label: 'a' }, { label: 'a', top_k: 1 }] }, /cases: two cases are labelled "a"/],
    [{ recipe, cases: [] }, /cases: expected a non-empty list of mappings/],
    [{ recipe, convert: { strategy: 'topk' } }, /convert\.strategy: unknown field; allowed: calib_tokens, epsilon/],
  ])('%j is a one-line error', (document, message) => {
    expect(() => loadStudy(study(document))).toThrow(message);
  });
});
