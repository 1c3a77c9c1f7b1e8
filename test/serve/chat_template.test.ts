import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiError } from '../../src/serve/api_error';
import { PLAIN_CHAT_TEMPLATE, compileChatTemplate, loadChatTemplate } from '../../src/serve/chat_template';
import { UserError } from '../../src/errors';

// ChatML, as Qwen and many others ship it in tokenizer_config.json.
const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
// A Llama-2-style template that uses bos_token/eos_token and refuses roles out of order.
const LLAMA2 =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'].strip() + ' [/INST]' }}" +
  "{% else %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-chat-template-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const writeConfig = (config: object) => fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));

test('the plain default renders Role: content paragraphs and an Assistant: prompt', () => {
  const template = compileChatTemplate(PLAIN_CHAT_TEMPLATE, {}, 'plain default');
  const text = template.render([
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello.' },
    { role: 'user', content: 'Again' },
  ]);
  expect(text).toBe('System: Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Again\n\nAssistant:');
});

test('a model folder without a template gets the plain default', () => {
  writeConfig({ eos_token: '<|endoftext|>' });
  expect(loadChatTemplate(dir).source).toBe('plain default');
});

test("tokenizer_config.json's chat_template renders as transformers does (ChatML)", () => {
  writeConfig({ chat_template: CHATML, eos_token: '<|im_end|>' });
  const text = loadChatTemplate(dir).render([
    { role: 'system', content: 'You are helpful.' },
    { role: 'user', content: 'Hi' },
  ]);
  expect(text).toBe('<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
});

test('special tokens from the config (string or { content }), and raise_exception becomes a 400', () => {
  writeConfig({ chat_template: LLAMA2, bos_token: { content: '<s>' }, eos_token: '</s>' });
  const template = loadChatTemplate(dir);
  expect(template.render([{ role: 'user', content: ' Hi ' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: 'More' }])).toBe(
    '<s>[INST] Hi [/INST] Hello </s>[INST] More [/INST]',
  );
  let error: unknown;
  try {
    template.render([{ role: 'assistant', content: 'first' }]);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ApiError);
  expect((error as ApiError).status).toBe(400);
  expect((error as ApiError).message).toMatch(/roles must alternate/);
});

test('chat_template.jinja wins over the config; named templates use "default"; a broken template is a UserError', () => {
  writeConfig({ chat_template: [{ name: 'tool_use', template: 'tools' }, { name: 'default', template: CHATML }] });
  expect(loadChatTemplate(dir).render([{ role: 'user', content: 'x' }])).toBe('<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n');
  fs.writeFileSync(path.join(dir, 'chat_template.jinja'), '{% for m in messages %}[{{ m.content }}]{% endfor %}');
  expect(loadChatTemplate(dir).render([{ role: 'user', content: 'x' }])).toBe('[x]');
  fs.writeFileSync(path.join(dir, 'chat_template.jinja'), '{% for m in messages %}');
  expect(() => loadChatTemplate(dir)).toThrow(UserError);
  fs.rmSync(path.join(dir, 'chat_template.jinja'));
  writeConfig({ chat_template: 42 });
  expect(() => loadChatTemplate(dir)).toThrow(/chat_template must be a string/);
});
