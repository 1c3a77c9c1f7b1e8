import type { RequestSampler, ServeModel } from './batch_evaluator';
import { CompletionText } from './completion_text';
import type { FinishReason, GenerationListener, GenerationParams } from './generation';

/** A request's state inside the scheduler: its slot, its tokens, how many of them the KV cache holds. */
export class Sequence {
  slot = -1;
  /** Prompt then generated tokens. */
  readonly tokens: number[];
  /** Tokens already evaluated into the slot's KV cache; the rest are fed next. */
  fed = 0;
  generated = 0;
  finished = false;
  cancelled = false;
  private readonly sampler: RequestSampler;
  private readonly text: CompletionText;

  constructor(
    readonly params: GenerationParams,
    private readonly listener: GenerationListener,
    private readonly model: ServeModel,
  ) {
    this.tokens = [...params.promptTokens];
    this.sampler = model.createSampler({ temperature: params.temperature, topP: params.topP, seed: params.seed });
    this.text = new CompletionText(model.tokenizer, params.stop);
  }

  /** Still holds a slot that the scheduler must feed or free. */
  get live(): boolean {
    return !this.finished && !this.cancelled;
  }

  get prefilling(): boolean {
    return this.fed < this.tokens.length - 1;
  }

  /** Consumes the logits row [V] predicting the token after `tokens`: samples, emits text, maybe finishes. */
  acceptLogits(row: Float32Array): void {
    const token = this.sampler.sample(row);
    this.generated++;
    if (token === this.model.tokenizer.eosId) {
      this.finish('stop');
      return;
    }
    this.tokens.push(token);
    const { delta, stopped } = this.text.push(token);
    if (delta) this.listener.onText(delta);
    if (stopped) this.finish('stop');
    else if (this.generated >= this.params.maxTokens || this.tokens.length >= this.model.maxContext) this.finish('length');
  }

  fail(error: Error): void {
    if (!this.live) return;
    this.finished = true;
    this.listener.onError(error);
  }

  private finish(reason: FinishReason): void {
    const { delta, stopped } = this.text.finish();
    if (delta) this.listener.onText(delta);
    this.finished = true;
    this.listener.onFinish({
      text: this.text.fullText,
      finishReason: stopped ? 'stop' : reason,
      promptTokens: this.params.promptTokens.length,
      completionTokens: this.generated,
    });
  }
}
