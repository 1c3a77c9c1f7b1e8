/** The architectures `dsmoe convert` imports, by config.json `model_type`. */
import type { HfArchitecture } from './architecture';
import { mixtralArchitecture } from './mixtralArchitecture';
import { olmoeArchitecture } from './olmoeArchitecture';
import { qwen2MoeArchitecture } from './qwen2MoeArchitecture';

export const ARCHITECTURES: readonly HfArchitecture[] = [qwen2MoeArchitecture, olmoeArchitecture, mixtralArchitecture];

export function architectureFor(modelType: unknown): HfArchitecture | undefined {
  return ARCHITECTURES.find((a) => a.modelType === modelType);
}
