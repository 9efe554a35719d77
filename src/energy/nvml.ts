import { execFile } from "node:child_process";
import { counterMeter } from "./counter.js";
import type { EnergyMeter, MeterUnavailable } from "./meter.js";

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
  for (const line of output
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")) {
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

/**
 * NVML's total-energy counter (mJ since the driver loaded) read through nvidia-smi: no native
 * binding to build, and nvidia-smi ships with every NVIDIA driver.
 */
export async function openNvml(run: CommandRunner = runCommand): Promise<EnergyMeter | MeterUnavailable> {
  try {
    const gpus = parseEnergyQuery(await run("nvidia-smi", QUERY));
    const read = async () =>
      Object.fromEntries(parseEnergyQuery(await run("nvidia-smi", QUERY)).map((g) => [`gpu${g.index}`, g.millijoules]));
    const description = `NVML total_energy_consumption of ${gpus.map((g) => `gpu${g.index} (${g.name})`).join(" + ")} via nvidia-smi`;
    return counterMeter("nvml", description, read, (_name, start, end) => (end - start) / 1000);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { source: "nvml", reason: err.code === "ENOENT" ? "nvidia-smi not found (no NVIDIA driver)" : err.message };
  }
}
