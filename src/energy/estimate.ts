import { readFile } from "node:fs/promises";
import { cpus } from "node:os";
import type { EnergyMark, EnergyMeasurement, EnergyMeter } from "./meter.js";

/**
 * Constants of the Green Algorithms model (Lannelongue et al. 2021):
 * power = (cores * wattsPerCore * utilisation + memoryGb * wattsPerGb) * pue.
 */
export interface EstimateConstants {
  cores: number;
  wattsPerCore: number;
  /** Memory counted, unless fixed here: the process's resident set (process mode) or the host's used memory (system mode). */
  memoryGb: number | null;
  wattsPerGb: number;
  pue: number;
  /** process: this process's CPU time (Dawn's CPU drivers run in it); system: all CPUs from /proc/stat (a browser's processes). */
  utilisation: "process" | "system";
}

export const DEFAULT_ESTIMATE: EstimateConstants = {
  cores: cpus().length,
  // Green Algorithms' per-core TDP for an unlisted CPU model.
  wattsPerCore: 12,
  memoryGb: null,
  wattsPerGb: 0.3725,
  // A workstation or CI runner, not a data centre (the model's default PUE there is 1.67).
  pue: 1,
  utilisation: "process",
};

/** Busy and total jiffies over all CPUs, from the first line of /proc/stat. */
export function parseProcStat(text: string): { busy: number; total: number } {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) throw new Error("/proc/stat: no aggregate cpu line");
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

export interface EstimateProbes {
  /** CPU seconds used by this process so far. */
  processCpuSeconds(): number;
  residentGb(): number;
  procStat(): Promise<string>;
  /** Host memory in use (MemTotal - MemAvailable), GB. */
  usedMemoryGb(): Promise<number>;
}

/** MemTotal - MemAvailable from /proc/meminfo, in GB. */
export function parseMeminfoUsedGb(text: string): number {
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  const used = kb("MemTotal") - kb("MemAvailable");
  if (!Number.isFinite(used)) throw new Error("/proc/meminfo: no MemTotal/MemAvailable");
  return (used * 1024) / 1e9;
}

const nodeProbes: EstimateProbes = {
  processCpuSeconds() {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  },
  residentGb: () => process.memoryUsage().rss / 1e9,
  procStat: () => readFile("/proc/stat", "utf8"),
  usedMemoryGb: async () => parseMeminfoUsedGb(await readFile("/proc/meminfo", "utf8")),
};

class EstimateMeter implements EnergyMeter {
  readonly source = "estimate" as const;
  readonly description: string;
  readonly constants: Record<string, number | string>;

  constructor(
    private readonly c: EstimateConstants,
    private readonly probes: EstimateProbes,
  ) {
    this.description = `ESTIMATE (Green Algorithms model, not a measurement): (cores x W/core x utilisation + GB x W/GB) x PUE, utilisation from ${c.utilisation === "process" ? "this process's CPU time" : "/proc/stat"}`;
    this.constants = {
      formula: "(cores * watts_per_core * utilisation + memory_gb * watts_per_gb) * pue",
      cores: c.cores,
      watts_per_core: c.wattsPerCore,
      memory_gb: c.memoryGb ?? (c.utilisation === "process" ? "process resident set" : "host used memory (/proc/meminfo)"),
      watts_per_gb: c.wattsPerGb,
      pue: c.pue,
      utilisation: c.utilisation,
    };
  }

  private async cpuSeconds(): Promise<number> {
    if (this.c.utilisation === "process") return this.probes.processCpuSeconds();
    // Jiffies are 1/100 s on Linux (USER_HZ).
    return parseProcStat(await this.probes.procStat()).busy / 100;
  }

  async start(): Promise<EnergyMark> {
    return { at: performance.now(), values: await this.cpuSeconds() };
  }

  async stop(mark: EnergyMark): Promise<EnergyMeasurement> {
    const seconds = (performance.now() - mark.at) / 1000;
    const cpuSeconds = (await this.cpuSeconds()) - (mark.values as number);
    const memoryGb = this.c.memoryGb ?? (this.c.utilisation === "process" ? this.probes.residentGb() : await this.probes.usedMemoryGb());
    return estimateEnergy(this.c, seconds, cpuSeconds, memoryGb);
  }
}

/** The model itself: energy of `seconds` of wall time in which `cpuSeconds` of CPU time were used. */
export function estimateEnergy(c: EstimateConstants, seconds: number, cpuSeconds: number, memoryGb: number): EnergyMeasurement {
  const utilisation = seconds > 0 ? Math.min(1, Math.max(0, cpuSeconds / (seconds * c.cores))) : 0;
  const cpuJ = c.cores * c.wattsPerCore * utilisation * seconds * c.pue;
  const memJ = memoryGb * c.wattsPerGb * seconds * c.pue;
  return { joules: cpuJ + memJ, seconds, domains: { cpu: cpuJ, memory: memJ } };
}

export function openEstimate(constants: Partial<EstimateConstants> = {}, probes: EstimateProbes = nodeProbes): EnergyMeter {
  return new EstimateMeter({ ...DEFAULT_ESTIMATE, ...constants }, probes);
}
