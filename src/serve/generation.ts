/** One completion as the scheduler sees it: token ids in, text out (validated by the HTTP layer). */
export interface GenerationParams {
  promptTokens: number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  stop: string[];
}

export type FinishReason = 'stop' | 'length';

export interface GenerationResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

/** How a request hears about its progress; exactly one of onFinish / onError / cancellation ends it. */
export interface GenerationListener {
  /** A piece of text that is final (no stop string can still swallow it). */
  onText(delta: string): void;
  onFinish(result: GenerationResult): void;
  onError(error: Error): void;
}

/** Returned by `submit`: lets the HTTP layer cancel when its client goes away. */
export interface GenerationHandle {
  cancel(): void;
}
