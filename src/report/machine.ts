import * as os from 'os';

/** The machine's limits, measured in the same process as the benchmark (docs/design.md §5 addon exports). */
export interface MachineProbe {
  cpuInfo(): { simd: string; threads: number; cuda: boolean };
  memoryBandwidthGBs(bytes?: number): number;
  peakGflops(): number;
}

export interface MachineReport {
  cpu: string;
  simd: string;
  cores: number; // logical CPUs the OS reports
  threads: number; // threads the runtime used
  memory_bandwidth_gbs: number;
  peak_gflops: number;
  total_memory_gb: number;
  node: string;
  platform: string;
}

/**
 * Bandwidth is measured twice (before and after the benchmark) and the higher kept: a shared machine can only make
 * a measurement slower, and the achieved-fraction figures should be against what the memory system can do.
 */
export function measureMachine(probe: MachineProbe, threads: number): MachineReport {
  const info = probe.cpuInfo();
  return {
    cpu: os.cpus()[0]?.model?.trim() || 'unknown',
    simd: info.simd,
    cores: os.cpus().length,
    threads,
    memory_bandwidth_gbs: probe.memoryBandwidthGBs(),
    peak_gflops: probe.peakGflops(),
    total_memory_gb: os.totalmem() / 2 ** 30,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

export function remeasureBandwidth(probe: MachineProbe, machine: MachineReport): MachineReport {
  return { ...machine, memory_bandwidth_gbs: Math.max(machine.memory_bandwidth_gbs, probe.memoryBandwidthGBs()) };
}
