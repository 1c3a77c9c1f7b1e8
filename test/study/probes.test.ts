import { cutTextBlocks, loadCorpusText, validationBlockMask } from '../../src/data';
import { generateProblem, heldOutProblems, memorizationItems, mixProblems, parseProbeSpec, type ProbeSpec } from '../../src/study/probes';
import { rngFor } from '../../src/data';

const spec: ProbeSpec = parseProbeSpec('study.yaml', { seed: 5, share: 0.1, items: 60, digits: 3, chain: 3, prompt_chars: 24, answer_chars: 10 });

/** An independent solver: reads the question back and computes the answer with plain arithmetic. */
function solve(question: string): string {
  let match = /^(\d+)\+(\d+)=$/.exec(question);
  if (match) return String(Number(match[1]) + Number(match[2]));
  match = /^(\d+)%(\d+)=$/.exec(question);
  if (match) return String(Number(match[1]) % Number(match[2]));
  const values = new Map<string, number>();
  const parts = question.split(';');
  for (const part of parts.slice(0, -1)) {
    const [name, expression] = part.split('=');
    const term = /^([a-z])([+-])(\d)$/.exec(expression);
    values.set(name, term ? values.get(term[1])! + (term[2] === '+' ? 1 : -1) * Number(term[3]) : Number(expression));
  }
  return String(values.get(parts[parts.length - 1].slice(0, 1)));
}

describe('probe generators', () => {
  test('every task produces problems whose answers an independent solver agrees with', () => {
    const rng = rngFor(9);
    for (const task of spec.tasks) {
      for (let i = 0; i < 200; i++) {
        const { question, answer } = generateProblem(task, rng, spec);
        expect(solve(question)).toBe(answer);
      }
    }
    const binding = generateProblem('binding', rngFor(3), spec).question;
    expect(binding).toMatch(/^[a-z]=\d;[a-z]=[a-z][+-]\d;[a-z]=[a-z][+-]\d;[a-z]\?=$/);
  });

  test('held-out problems: the same seed gives the same items, tasks in turn, no question twice', () => {
    const items = heldOutProblems(spec);
    expect(items).toEqual(heldOutProblems(spec));
    expect(items).not.toEqual(heldOutProblems({ ...spec, seed: 6 }));
    expect(items).toHaveLength(60);
    expect(items.slice(0, 3).map((i) => i.kind)).toEqual(['addition', 'modular', 'binding']);
    expect(new Set(items.map((i) => i.prompt)).size).toBe(60);
    for (const item of items) {
      expect(item.prompt.startsWith('\n')).toBe(true);
      expect(item.answer.endsWith('\n')).toBe(true);
      expect(solve(item.prompt.slice(1))).toBe(item.answer.slice(0, -1));
    }
  });

  test('mixing: about the set share of the text, deterministic, and no held-out problem in the training text', () => {
    const text = loadCorpusText({ corpus: 'default', text_field: 'text' }).slice(0, 300_000);
    const mixed = mixProblems(text, spec);
    expect(mixProblems(text, spec).text).toBe(mixed.text);
    const lines = mixed.text.split('\n');
    const problemLines = lines.filter((line) => /^[0-9a-z%+=;?-]*=-?\d+$/.test(line));
    expect(problemLines.length).toBe(mixed.problems);
    const share = problemLines.reduce((n, l) => n + l.length + 1, 0) / mixed.text.length;
    expect(share).toBeGreaterThan(0.09);
    expect(share).toBeLessThan(0.11);
    // The original lines are all there, in order.
    expect(lines.filter((line) => !problemLines.includes(line)).join('\n')).toBe(text);
    const questions = new Set(problemLines.map((line) => line.slice(0, line.lastIndexOf('=') + 1)));
    for (const item of heldOutProblems(spec)) expect(questions.has(item.prompt.slice(1))).toBe(false);
    expect(mixProblems(text, { ...spec, share: 0 })).toEqual({ text, problems: 0 });
  });

  test('memorization items come from training blocks, control items from held-out blocks, as the trainer splits', () => {
    const text = loadCorpusText({ corpus: 'default', text_field: 'text' }).slice(0, 400_000);
    const { memorization, control } = memorizationItems(text, 1234, 0.05, spec);
    expect(memorization).toHaveLength(60);
    expect(control).toHaveLength(60);
    expect(memorizationItems(text, 1234, 0.05, spec)).toEqual({ memorization, control });
    const blocks = cutTextBlocks(text);
    const held = validationBlockMask(1234, 0.05, blocks.length);
    const blockOf = (at: number) => {
      let offset = 0;
      for (let b = 0; b < blocks.length; b++) {
        if (at < offset + blocks[b].length) return b;
        offset += blocks[b].length;
      }
      return -1;
    };
    const check = (items: typeof memorization, heldOut: boolean) => {
      for (const item of items) {
        expect(item.prompt).toHaveLength(24);
        expect(item.answer).toHaveLength(10);
        const at = text.indexOf(item.prompt + item.answer);
        expect(at).toBeGreaterThanOrEqual(0);
        expect(item.answer).not.toContain('\n'); // the answer continues the verse
        // (a phrase can repeat elsewhere in the text; the first occurrence must still be on the right side for most)
        if (text.indexOf(item.prompt + item.answer, at + 1) < 0) expect(held[blockOf(at + item.prompt.length)]).toBe(heldOut);
      }
    };
    check(memorization, false);
    check(control, true);
  });

  test('bad probe settings are one-line errors naming the field', () => {
    expect(() => parseProbeSpec('s.yaml', { share: 0.7 })).toThrow('s.yaml: probes.share: expected a number in [0, 0.5), got 0.7');
    expect(() => parseProbeSpec('s.yaml', { tasks: ['division'] })).toThrow(/probes.tasks: expected a non-empty list of addition, modular, binding/);
    expect(() => parseProbeSpec('s.yaml', { items: 0 })).toThrow(/probes.items: expected an integer in 1\.\./);
    expect(() => parseProbeSpec('s.yaml', { colour: 1 })).toThrow(/probes.colour: unknown field/);
  });
});
