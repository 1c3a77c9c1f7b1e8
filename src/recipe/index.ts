export { loadRecipe, recipeFromDocument } from './load';
export { recipeHash, canonicalJson } from './hash';
export type { Recipe } from './types';
