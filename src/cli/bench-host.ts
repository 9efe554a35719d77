import type { BenchFlags } from "./bench.js";
import { cachedReadCeiling } from "./info.js";
import { chooseMeter } from "../energy/select.js";
import type { GpuContext } from "../gpu/device.js";
import { describeWeightFormat } from "../model/weight-format.js";
import type { LoadedModel } from "../node.js";

/** The energy meter a bench on `gpu` reads (--energy, --watts-per-core, --pue; NVML where the adapter is NVIDIA's). */
export function benchMeter(flags: BenchFlags, gpu: GpuContext): ReturnType<typeof chooseMeter> {
  return chooseMeter({
    source: flags.energy,
    nvidiaAdapter: /nvidia/i.test(`${gpu.adapter.vendor} ${gpu.adapter.description}`),
    estimate: {
      ...(flags.wattsPerCore !== undefined ? { wattsPerCore: flags.wattsPerCore } : {}),
      ...(flags.pue !== undefined ? { pue: flags.pue } : {}),
    },
  });
}

/** Where a bench ran, as its report says: runtime, adapter, kernel flavour and the adapter's cached read ceiling. */
export function benchHost(gpu: GpuContext): { runtime: string; adapter: string; kernels: string; readCeilingGBs?: number } {
  const a = gpu.adapter;
  return {
    runtime: `node ${process.version} + Dawn (webgpu npm)`,
    adapter: a.description || a.device || a.vendor,
    kernels: gpu.flavour,
    readCeilingGBs: cachedReadCeiling(gpu),
  };
}

/** How a loaded model's weights are stored: their format and the row-block layout. */
export function weightsOf(lm: LoadedModel): string {
  return [describeWeightFormat(lm.checkpoint), lm.engine.rowBlocksSummary].filter((s) => s !== null).join(", ");
}
