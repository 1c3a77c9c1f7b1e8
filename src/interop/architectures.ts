/** The architectures `dsmoe convert` imports, by config.json `model_type`. */
import type { HfArchitecture } from './architecture';
import { megrezArchitecture } from './megrez_architecture';
import { mixtralArchitecture } from './mixtral_architecture';
import { olmoeArchitecture } from './olmoe_architecture';
import { qwen2MoeArchitecture } from './qwen2_moe_architecture';

export const ARCHITECTURES: readonly HfArchitecture[] = [qwen2MoeArchitecture, olmoeArchitecture, mixtralArchitecture, megrezArchitecture];

export function architectureFor(modelType: unknown): HfArchitecture | undefined {
  return ARCHITECTURES.find((a) => a.modelType === modelType);
}
