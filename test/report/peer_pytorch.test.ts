import { bestOfRounds, findTorchPython, parsePeerOutput, runPeer, withOurTimings } from '../../src/report/peer_pytorch';

describe('PyTorch peer column', () => {
  test('an interpreter without torch is skipped with a clear reason', () => {
    const found = findTorchPython(['/nonexistent/python3']);
    expect('reason' in found && found.reason).toMatch(/^PyTorch not available/);
  });

  test('the script\'s "not available" answer and malformed output become unavailable entries', () => {
    expect(parsePeerOutput('{"available": false, "reason": "PyTorch not available (No module named torch)"}\n', 'python3')).toEqual({
      available: false,
      reason: 'PyTorch not available (No module named torch)',
    });
    expect(parsePeerOutput('Traceback ...', 'python3').available).toBe(false);
  });

  test('our timings pair with PyTorch\'s at the same dtype and batch', () => {
    const line = JSON.stringify({
      available: true, torch_version: '2.0', blas: 'openblas', threads: 2, shape: { hidden: 8, experts: 4, intermediate: 4, k: 2 },
      results: [
        { dtype: 'f32', batch: 1, k: 2, min_ms: 10, p50_ms: 11, p95_ms: 12, mean_ms: 11, tokens_per_s: 90, samples: 5 },
        { dtype: 'bf16', batch: 1, k: 2, min_ms: 30, p50_ms: 31, p95_ms: 33, mean_ms: 31, tokens_per_s: 30, samples: 5 },
      ],
    });
    const peer = withOurTimings(parsePeerOutput(line, 'python3'), [
      { dtype: 'f32', batch: 1, mean_ms: 3, min_ms: 2.5, p50_ms: 2.8, method: 'm' },
      { dtype: 'bf16', batch: 1, mean_ms: 6, min_ms: 5, p50_ms: 5.5, method: 'm' },
      { dtype: 'bf16', batch: 64, mean_ms: 6, min_ms: 5, p50_ms: 5, method: 'm' }, // no PyTorch row: no comparison
    ]);
    if (!peer.available) throw new Error('expected an available peer');
    expect(peer.blas).toBe('openblas');
    expect(peer.comparison).toEqual([
      { dtype: 'f32', batch: 1, torch_ms: 10, ours_ms: 2.5, speedup: 4 },
      { dtype: 'bf16', batch: 1, torch_ms: 30, ours_ms: 5, speedup: 6 },
    ]);
  });

  test('rounds merge to the best call per (dtype, batch)', () => {
    const merged = bestOfRounds([
      [{ dtype: 'f32', batch: 1, min_ms: 4 }, { dtype: 'f32', batch: 64, min_ms: 100 }],
      [{ dtype: 'f32', batch: 1, min_ms: 3 }, { dtype: 'f32', batch: 64, min_ms: 120 }],
    ]);
    expect(merged).toEqual([{ dtype: 'f32', batch: 1, min_ms: 3 }, { dtype: 'f32', batch: 64, min_ms: 100 }]);
  });

  const torch = findTorchPython();
  (('python' in torch) ? test : test.skip)('the script times a small layer when PyTorch is installed', () => {
    const peer = runPeer({ shape: { hidden: 32, experts: 4, intermediate: 16, k: 2 }, batches: [1, 4], dtypes: ['f32'], threads: 1, repeats: 2, timeoutMs: 60_000, python: (torch as { python: string }).python });
    if (!peer.available) throw new Error(peer.reason);
    expect(peer.results.map((r) => [r.dtype, r.batch])).toEqual([['f32', 1], ['f32', 4]]);
    for (const r of peer.results) {
      expect(r.p50_ms).toBeGreaterThanOrEqual(r.min_ms);
      expect(r.min_ms).toBeGreaterThan(0);
      expect(r.tokens_per_s).toBeCloseTo(r.batch / (r.mean_ms / 1000), 6);
    }
  });
});
