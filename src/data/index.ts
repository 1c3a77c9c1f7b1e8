export { loadCorpusText, packageRoot, defaultCorpusPath } from './corpus';
export { buildTokenizer, encodePrompt, loadTokenizer, type Tokenizer, type TokenizerSpec } from './tokenizer';
export { EOS_TOKEN } from './byte_level';
export { TokenDataset, validationBlockMask, entropyBits, textWindows, windowSequences, SPLIT_BLOCKS, type Windows } from './dataset';
export { heldOutSplit, cutWindows, type HeldOutSplit, type HeldOutOptions } from './held_out_split';
export { prepareData, cutTextBlocks, type PreparedData } from './prepare';
export { Rng, rngFor, mix32 } from './random';
export { writePreparedData, readPreparedData, readBatchStarts, preparedFiles, type PreparedFolder, type PreparedMeta } from './prepared_data';
