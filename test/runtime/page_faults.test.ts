import { pageFaultsDuring } from '../../src/runtime/page_faults';

describe('pageFaultsDuring', () => {
  it('counts the minor faults of touching fresh memory, and none when nothing is touched', async () => {
    const bytes = 64 << 20;
    const touched = await pageFaultsDuring(() => {
      const b = Buffer.alloc(bytes); // zero pages mapped lazily: first writes fault
      for (let i = 0; i < bytes; i += 4096) b[i] = 1;
      return b.length;
    });
    expect(touched.value).toBe(bytes);
    // At least one fault per 2 MiB even with transparent huge pages.
    expect(touched.faults.minor).toBeGreaterThanOrEqual(bytes / (2 << 20));
    expect(touched.faults.major).toBeGreaterThanOrEqual(0);
    const idle = await pageFaultsDuring(() => 1 + 1);
    expect(idle.faults.minor).toBeLessThan(touched.faults.minor);
  });
});
