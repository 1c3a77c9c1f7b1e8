import { ApiError } from '../../src/serve/api_error';
import { parseChatRequest } from '../../src/serve/chat_request';

describe('parseChatRequest', () => {
  const parse = (body: object) => parseChatRequest(JSON.stringify(body), { maxContext: 100 });
  test('content parts join with newlines; max_completion_tokens and max_tokens agree or fail', () => {
    const request = parse({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }], max_completion_tokens: 5, max_tokens: 5 });
    expect(request.messages).toEqual([{ role: 'user', content: 'a\nb' }]);
    expect(request.maxTokens).toBe(5);
    expect(parse({ messages: [{ role: 'user', content: 'x' }] }).maxTokens).toBeNull();
    expect(() => parse({ messages: [{ role: 'user', content: 'x' }], max_tokens: 5, max_completion_tokens: 6 })).toThrow(/differ/);
  });

  test.each([
    [{ messages: 'hi' }, 'messages'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0]'],
    [{ messages: [{ role: 'user', content: 'x', tool_calls: [] }] }, 'messages[0]'],
    [{ messages: [{ role: 'user' }] }, 'messages[0]'],
    [{ messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function' }] }, 'tools'],
    [{ messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
    [{ messages: [{ role: 'user', content: 'x' }], max_tokens: 101 }, 'max_tokens'],
    [{ messages: [{ role: 'user', content: 'x' }], seed: 2 ** 53 - 1, n: 2 }, 'seed'],
  ])('%j is refused naming %s', (body, param) => {
    let error: unknown;
    try {
      parse(body);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).param).toBe(param);
  });
});
