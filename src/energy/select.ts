import { openEstimate, type EstimateConstants } from "./estimate.js";
import type { EnergyMeter, EnergySource, MeterUnavailable } from "./meter.js";
import { openNvml, runCommand, type CommandRunner } from "./nvml.js";
import { openRapl, POWERCAP_ROOT } from "./rapl.js";

export interface MeterChoice {
  meter: EnergyMeter;
  /** Meters tried before it and why each was not used. */
  unavailable: MeterUnavailable[];
}

export interface MeterOptions {
  /** Force one source instead of the first that works (nvml, then rapl, then estimate). */
  source?: EnergySource;
  /** Whether the work runs on an NVIDIA GPU: NVML is only the right meter then. */
  nvidiaAdapter?: boolean;
  powercapRoot?: string;
  run?: CommandRunner;
  estimate?: Partial<EstimateConstants>;
}

function isMeter(m: EnergyMeter | MeterUnavailable): m is EnergyMeter {
  return "start" in m;
}

/**
 * Picks the meter for the adapter: NVML when the work runs on an NVIDIA GPU, RAPL for CPU work
 * (lavapipe, SwiftShader), and otherwise the labelled estimate.
 */
export async function chooseMeter(o: MeterOptions = {}): Promise<MeterChoice> {
  const unavailable: MeterUnavailable[] = [];
  const want = (s: EnergySource) => o.source === undefined || o.source === s;
  if (want("nvml") && (o.nvidiaAdapter || o.source === "nvml")) {
    const m = await openNvml(o.run ?? runCommand);
    if (isMeter(m)) return { meter: m, unavailable };
    unavailable.push(m);
  }
  if (want("rapl")) {
    const m = await openRapl(o.powercapRoot ?? POWERCAP_ROOT);
    if (isMeter(m)) return { meter: m, unavailable };
    unavailable.push(m);
  }
  return { meter: openEstimate(o.estimate), unavailable };
}
