/** The sampler contract shared by every generation path (docs/design.md §10); imports no pipeline stage. */
export { checkCounter, checkSeed, seedToUint64, uniform, uniformBits } from './uniform';
export {
  Sampler,
  argMax,
  checkSamplingOptions,
  checkSamplingParams,
  nucleus,
  sampleToken,
  walk,
  type Nucleus,
  type SampleFunction,
  type SamplingOptions,
  type SamplingParams,
} from './sampler';
