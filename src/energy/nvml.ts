import { execFile } from "node:child_process";
import type { EnergyMark, EnergyMeasurement, EnergyMeter, MeterUnavailable } from "./meter.js";

/** Runs a command and returns its stdout; injectable so tests can replay recorded nvidia-smi output. */
export type CommandRunner = (command: string, args: string[]) => Promise<string>;

export const runCommand: CommandRunner = (command, args) =>
  new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 10_000 }, (error, stdout) => (error ? reject(error) : resolve(stdout)));
  });

const QUERY = ["--query-gpu=index,name,total_energy_consumption", "--format=csv,noheader,nounits"];

interface GpuEnergy {
  index: string;
  name: string;
  millijoules: number;
}

/** Parses `nvidia-smi --query-gpu=index,name,total_energy_consumption --format=csv,noheader,nounits`. */
export function parseEnergyQuery(output: string): GpuEnergy[] {
  const gpus: GpuEnergy[] = [];
  for (const line of output.split("\n").map((l) => l.trim()).filter((l) => l !== "")) {
    const parts = line.split(",").map((p) => p.trim());
    if (parts.length < 3) throw new Error(`nvidia-smi: expected "index, name, energy", got "${line}"`);
    const energy = parts[parts.length - 1];
    const mj = Number(energy);
    if (!/^\d+(\.\d+)?$/.test(energy) || !Number.isFinite(mj)) {
      throw new Error(`nvidia-smi: GPU ${parts[0]} reports total_energy_consumption "${energy}" (the counter needs a Volta or newer GPU)`);
    }
    gpus.push({ index: parts[0], name: parts.slice(1, -1).join(","), millijoules: mj });
  }
  if (gpus.length === 0) throw new Error("nvidia-smi listed no GPUs");
  return gpus;
}

class NvmlMeter implements EnergyMeter {
  readonly source = "nvml" as const;
  readonly description: string;

  constructor(
    private readonly run: CommandRunner,
    gpus: GpuEnergy[],
  ) {
    this.description = `NVML total_energy_consumption of ${gpus.map((g) => `gpu${g.index} (${g.name})`).join(" + ")} via nvidia-smi`;
  }

  private async read(): Promise<GpuEnergy[]> {
    return parseEnergyQuery(await this.run("nvidia-smi", QUERY));
  }

  async start(): Promise<EnergyMark> {
    return { at: performance.now(), values: await this.read() };
  }

  async stop(mark: EnergyMark): Promise<EnergyMeasurement> {
    const end = await this.read();
    const start = mark.values as GpuEnergy[];
    const domains: Record<string, number> = {};
    let joules = 0;
    for (const g of end) {
      const before = start.find((s) => s.index === g.index);
      if (!before) continue;
      const j = (g.millijoules - before.millijoules) / 1000;
      domains[`gpu${g.index}`] = j;
      joules += j;
    }
    return { joules, seconds: (performance.now() - mark.at) / 1000, domains };
  }
}

/**
 * NVML's total-energy counter (mJ since the driver loaded) read through nvidia-smi: no native
 * binding to build, and nvidia-smi ships with every NVIDIA driver.
 */
export async function openNvml(run: CommandRunner = runCommand): Promise<EnergyMeter | MeterUnavailable> {
  try {
    return new NvmlMeter(run, parseEnergyQuery(await run("nvidia-smi", QUERY)));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { source: "nvml", reason: err.code === "ENOENT" ? "nvidia-smi not found (no NVIDIA driver)" : err.message };
  }
}
