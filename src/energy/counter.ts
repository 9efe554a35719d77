import type { EnergyMark, EnergyMeasurement, EnergyMeter, EnergySource } from "./meter.js";

/**
 * A meter over cumulative energy counters (RAPL's microjoules, NVML's millijoules): it reads every
 * domain's counter at start and stop and turns each difference into joules.
 */
export function counterMeter(
  source: EnergySource,
  description: string,
  read: () => Promise<Record<string, number>>,
  joulesBetween: (domain: string, start: number, end: number) => number,
): EnergyMeter {
  return {
    source,
    description,
    async start(): Promise<EnergyMark> {
      return { at: performance.now(), values: await read() };
    },
    async stop(mark: EnergyMark): Promise<EnergyMeasurement> {
      const end = await read();
      const start = mark.values as Record<string, number>;
      const domains: Record<string, number> = {};
      let joules = 0;
      for (const [name, value] of Object.entries(end)) {
        if (start[name] === undefined) continue;
        domains[name] = joulesBetween(name, start[name], value);
        joules += domains[name];
      }
      return { joules, seconds: (performance.now() - mark.at) / 1000, domains };
    },
  };
}
