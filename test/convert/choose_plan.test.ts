import { choosePlan } from '../../src/convert/choose_plan';
import type { PlanChoicePoint } from '../../src/plan/plan_format';

/** The choice rule on a hand-made sweep: E = 8, dense loss 2.0, so the default 0.5% bound is 2.01. */

type Point = Omit<PlanChoicePoint, 'within_bound'>;
const PER_EXPERT = 1000;
const point = (strategy: Point['strategy'], experts: number, loss: number, extra: Partial<Point> = {}): Point => ({
  strategy,
  k: strategy === 'topk' ? experts : null,
  epsilon: strategy === 'topk' ? null : 0.2,
  layer_k: strategy === 'threshold-topk' ? [Math.ceil(experts), Math.floor(experts)] : null,
  mean_active_experts: experts,
  active_params: 10_000 + experts * PER_EXPERT,
  loss,
  ...extra,
});

const sweep: Point[] = [
  point('topk', 1, 2.5),
  point('topk', 2, 2.2),
  point('topk', 4, 2.03),
  point('topk', 6, 2.005),
  point('topk', 8, 2.0),
  point('threshold', 3.1, 2.009, { epsilon: 0.2 }),
  point('threshold', 2.4, 2.04, { epsilon: 0.48 }),
  point('threshold-topk', 3.5, 2.008, { epsilon: 0.2 }),
];

describe('choosePlan', () => {
  test('the fewest active parameters within dense × (1 + bound)', () => {
    const choice = choosePlan(sweep, 2.0, 0.005, 4096);
    expect(choice.loss_bound).toBeCloseTo(2.01, 12);
    expect(choice.chosen).toMatchObject({ strategy: 'threshold', epsilon: 0.2, mean_active_experts: 3.1, within_bound: true });
    // Every cheaper point is over the bound; the record marks each point.
    for (const p of choice.sweep) {
      expect(p.within_bound).toBe(p.loss <= 2.01);
      if (p.active_params < choice.chosen.active_params) expect(p.within_bound).toBe(false);
    }
    expect(choice.sweep).toHaveLength(sweep.length);
    expect(choice.tokens).toBe(4096);
  });

  test('a looser bound picks a cheaper point; a bound of 0 picks the dense-equivalent top-E', () => {
    expect(choosePlan(sweep, 2.0, 0.02, 1).chosen).toMatchObject({ strategy: 'threshold', epsilon: 0.48 });
    expect(choosePlan(sweep, 2.0, 0.2, 1).chosen).toMatchObject({ strategy: 'topk', k: 2 });
    expect(choosePlan(sweep, 2.0, 0, 1).chosen).toMatchObject({ strategy: 'topk', k: 8 });
  });

  test('a bound in perplexity: loss ≤ dense + ln(1 + share), recorded with its loss-share equivalent', () => {
    const tight = choosePlan(sweep, 2.0, { perplexity: 0.005 }, 1);
    expect(tight.loss_bound).toBeCloseTo(2.0 + Math.log(1.005), 12); // 2.00499: tighter than 2.0 × 1.005 at this loss
    expect(tight.chosen).toMatchObject({ strategy: 'topk', k: 8 });
    expect(tight.max_perplexity_increase).toBe(0.005);
    expect(tight.max_loss_increase).toBeCloseTo(Math.log(1.005) / 2.0, 12);
    expect(tight.rule).toMatch(/dense \+ ln\(1 \+ 0\.005\)/);
    expect(choosePlan(sweep, 2.0, { perplexity: 0.02 }, 1).chosen).toMatchObject({ strategy: 'threshold', epsilon: 0.2, mean_active_experts: 3.1 });
    expect(choosePlan(sweep, 2.0, 0.005, 1).max_perplexity_increase).toBeUndefined();
    expect(() => choosePlan(sweep, 2.0, { perplexity: -0.1 }, 1)).toThrow('max perplexity increase must be ≥ 0');
  });

  test('ties in cost go to the lower loss, then to the simpler rule', () => {
    const tied = [point('threshold', 3, 2.001), point('threshold-topk', 3, 2.001), point('topk', 3, 2.002)];
    expect(choosePlan(tied, 2.0, 0.005, 1).chosen.strategy).toBe('threshold-topk');
    const same = [point('threshold', 3, 2.001), point('topk', 3, 2.001)];
    expect(choosePlan(same, 2.0, 0.005, 1).chosen.strategy).toBe('topk');
  });

  test('when nothing meets the bound the lowest loss is chosen and the rule says so', () => {
    const choice = choosePlan([point('topk', 1, 2.5), point('topk', 2, 2.2)], 2.0, 0.005, 1);
    expect(choice.chosen.k).toBe(2);
    expect(choice.rule).toMatch(/no routing met/);
  });

  test('rejects an empty sweep and a negative bound', () => {
    expect(() => choosePlan([], 2, 0.005, 1)).toThrow(/no sweep points/);
    expect(() => choosePlan(sweep, 2, -0.1, 1)).toThrow(/≥ 0/);
  });
});
