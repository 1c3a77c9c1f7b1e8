import type { TokenLogprob } from './token_logprobs';

/** One completion as the scheduler sees it: token ids in, text out (validated by the HTTP layer). */
export interface GenerationParams {
  promptTokens: number[];
  /** 0 only with prompt log-probabilities: score the prompt, generate nothing. */
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  stop: string[];
  /** Report each generated token's log-probability and this many alternatives; null: none. */
  logprobs: number | null;
  /** Also report the log-probability of every prompt token after the first (`echo` with `logprobs`). */
  promptLogprobs: boolean;
}

export type FinishReason = 'stop' | 'length';

export interface GenerationResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** Per generated token in the text (end-of-text is not text and has none); empty unless asked for. */
  logprobs: TokenLogprob[];
  /** Per prompt position 1…n−1 (what the model gave each prompt token); empty unless asked for. */
  promptLogprobs: TokenLogprob[];
}

/** How a request hears about its progress; exactly one of onFinish / onError / cancellation ends it. */
export interface GenerationListener {
  /**
   * A piece of text that is final (no stop string can still swallow it), with the log-probabilities of the tokens
   * generated since the last call (empty unless asked for; a token held back mid-character comes with a later piece).
   */
  onText(delta: string, logprobs: TokenLogprob[]): void;
  onFinish(result: GenerationResult): void;
  onError(error: Error): void;
}

/** Returned by `submit`: lets the HTTP layer cancel when its client goes away. */
export interface GenerationHandle {
  cancel(): void;
}
