import type { BenchFlags } from "./bench.js";
import { cachedReadCeiling } from "./info.js";
import { chooseMeter } from "../energy/select.js";
import type { GpuContext } from "../gpu/device.js";
import { describeWeightFormat } from "../model/weight-format.js";
import type { LoadedModel } from "../node.js";
import type { ReportContext } from "../sparsity-bench/report.js";

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

/**
 * Where and how a bench ran, as its report says: runtime, adapter, kernel flavour, the adapter's
 * cached read ceiling, the prompt and run plan, and the energy meter.
 */
export function benchContext(
  gpu: GpuContext,
  flags: BenchFlags,
  promptTokens: number,
  { meter, unavailable }: Awaited<ReturnType<typeof chooseMeter>>,
): Omit<ReportContext, "modelName" | "synthetic" | "weightBytes"> {
  const a = gpu.adapter;
  return {
    runtime: `node ${process.version} + Dawn (webgpu npm)`,
    adapter: a.description || a.device || a.vendor,
    kernels: gpu.flavour,
    readCeilingGBs: cachedReadCeiling(gpu),
    promptTokens,
    tokens: flags.tokens,
    runs: flags.runs,
    chain: flags.chain,
    meter,
    unavailable,
  };
}

/** How a loaded model's weights are stored: their format and the row-block layout. */
export function weightsOf(lm: LoadedModel): string {
  return [describeWeightFormat(lm.checkpoint), lm.engine.rowBlocksSummary].filter((s) => s !== null).join(", ");
}
