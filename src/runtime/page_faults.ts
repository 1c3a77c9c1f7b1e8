/**
 * Page faults taken by the process while `fn` runs (getrusage minor/major via process.resourceUsage()).
 * A cold or reclaimed mmap'd plan shows up here as faults during decode, which a timer alone cannot tell
 * apart from slow kernels.
 */
export interface PageFaults {
  minor: number;
  major: number;
}

export async function pageFaultsDuring<T>(fn: () => T | Promise<T>): Promise<{ value: T; faults: PageFaults }> {
  const before = process.resourceUsage();
  const value = await fn();
  const after = process.resourceUsage();
  return {
    value,
    faults: { minor: after.minorPageFault - before.minorPageFault, major: after.majorPageFault - before.majorPageFault },
  };
}
