/** Where an energy figure comes from; every output names it. */
export type EnergySource = "nvml" | "rapl" | "estimate";

export interface EnergyMeasurement {
  joules: number;
  seconds: number;
  /** Joules per domain where the meter has several (RAPL package-0, dram, ...; NVML gpu0, ...). */
  domains: Record<string, number>;
}

/** An energy meter that can bracket a stretch of work. */
export interface EnergyMeter {
  readonly source: EnergySource;
  /** One line on what is measured, e.g. "RAPL package-0 + dram via /sys/class/powercap". */
  readonly description: string;
  /** For estimates: the model's constants, printed with every figure. */
  readonly constants?: Record<string, number | string>;
  start(): Promise<EnergyMark>;
  stop(mark: EnergyMark): Promise<EnergyMeasurement>;
}

/** Opaque state taken at start(). */
export interface EnergyMark {
  readonly at: number;
  readonly values: unknown;
}

/** A meter that could not be used, and why: reported instead of silently skipped. */
export interface MeterUnavailable {
  source: EnergySource;
  reason: string;
}
