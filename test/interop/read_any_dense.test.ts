/** The choice between dsmoe's own reader and the Hugging Face adapters; both give one DenseCheckpoint. */
import * as fs from 'fs';
import * as path from 'path';
import { readAnyDenseCheckpoint } from '../../src/interop/read_any_dense';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

function folder(): string {
  const dir = tempDir('any-dense');
  writeDenseFolder(dir, tinyConfig, randomDenseWeights(tinyConfig, 4));
  return dir;
}

test('dsmoe folders are read as they are; a Qwen2-MoE without the "dsmoe" block is imported, with the same tensors', () => {
  const dir = folder();
  const own = readAnyDenseCheckpoint(dir);
  expect(own.modelType).toBeUndefined();
  const configPath = path.join(dir, 'config.json');
  const { dsmoe: _, ...hub } = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  fs.writeFileSync(configPath, JSON.stringify(hub));
  const imported = readAnyDenseCheckpoint(dir);
  expect(imported).toMatchObject({ modelType: 'qwen2_moe', routingRule: 'softmax-unnormalized', normTopkProb: false });
  expect(imported.config).toEqual(own.config);
  for (const name of ['model.embed_tokens.weight', 'model.layers.1.mlp.experts.3.down_proj.weight', 'model.layers.0.self_attn.k_proj.bias']) {
    expect(imported.get(name)).toEqual(own.get(name));
  }
  expect(imported.sha256()).toBe(own.sha256());
});

test('a folder without weights names model.safetensors whichever reader would have read it', () => {
  const dir = folder();
  fs.rmSync(path.join(dir, 'model.safetensors'));
  expect(() => readAnyDenseCheckpoint(dir)).toThrow(/model\.safetensors: missing \(a dense checkpoint folder holds config\.json and model\.safetensors\)/);
});
