import { Bench } from "tinybench";
import { quantileOfSorted } from "../src/cats/quantiles.js";
import { createMlpRunner, type MlpPath } from "../src/engine/mlp-runner.js";
import { seededRandom } from "../src/engine/sampling.js";
import type { GpuContext } from "../src/gpu/device.js";
import { nodeKernelSource } from "../src/gpu/nodekernels.js";

export const MLP_SHAPES: Record<string, { hidden: number; inter: number }> = {
  stories260K: { hidden: 64, inter: 172 },
  "llama-110m": { hidden: 768, inter: 2048 },
  "llama2-7b": { hidden: 4096, inter: 11008 },
};

export interface KernelRow {
  kernel: string;
  shape: string;
  case: string;
  active_fraction: number;
  ms_per_call: number;
  bytes_per_call: number;
  gb_per_s: number;
  speedup_vs_dense: number;
}

/**
 * One MLP block on random f16 weights, one decode token: the dense kernels against the CATS sparse
 * kernels at 0/50/70/90%. Thresholds are quantiles of this input's |silu(gate)|, computed on the
 * CPU, so the active fraction is exact.
 */
export async function mlpCases(gpu: GpuContext, shapeNames: string[], timeMs: number): Promise<KernelRow[]> {
  const rows: KernelRow[] = [];
  for (const name of shapeNames) {
    const shape = MLP_SHAPES[name];
    if (!shape) throw new Error(`unknown shape ${name} (expected ${Object.keys(MLP_SHAPES).join(", ")})`);
    const { hidden: H, inter: I } = shape;
    const runner = await createMlpRunner(gpu, nodeKernelSource, { ...shape, f16: true, seed: 1 });
    const random = seededRandom(2);
    const h = Array.from({ length: H }, () => random() * 2 - 1);
    const x0 = new Array(H).fill(0);
    const absActs = new Float64Array(I);
    for (let i = 0; i < I; i++) {
      let g = 0;
      for (let k = 0; k < H; k++) g += runner.values.gate[i * H + k] * h[k];
      absActs[i] = Math.abs(g / (1 + Math.exp(-g)));
    }
    absActs.sort();
    // Enough calls per submission that submission overhead does not dominate the small shape.
    const calls = Math.max(2, Math.round(2e7 / (3 * H * I)));
    const cases: { label: string; path: MlpPath; level: number | null }[] = [
      { label: "dense", path: "dense", level: null },
      ...[0, 0.5, 0.7, 0.9].map((level) => ({ label: `sparse ${level * 100}%`, path: "sparse" as MlpPath, level })),
    ];
    const bench = new Bench({ time: timeMs, warmup: true });
    for (const c of cases) {
      const threshold = c.level === null ? null : c.level === 0 ? 0 : quantileOfSorted(absActs, c.level);
      bench.add(c.label, () => runner.time(calls, c.path), { beforeAll: () => runner.load(h, x0, threshold) });
    }
    await bench.run();
    let denseMs = NaN;
    for (const [i, task] of bench.tasks.entries()) {
      const c = cases[i];
      const r = task.result;
      if (r.state !== "completed") throw new Error(`${c.label}: ${r.state}`);
      const ms = r.latency.p50 / calls;
      const active = c.path === "dense" ? I : I - Math.round((c.level ?? 0) * I);
      const bytes = 2 * H * I + 2 * 2 * H * active; // f16: W_gate whole, W_up and W_down rows of active neurons
      if (c.path === "dense") denseMs = ms;
      rows.push({
        kernel: "mlp",
        shape: `${name} (${H} x ${I})`,
        case: c.label,
        active_fraction: active / I,
        ms_per_call: ms,
        bytes_per_call: bytes,
        gb_per_s: bytes / ms / 1e6,
        speedup_vs_dense: denseMs / ms,
      });
    }
    runner.destroy();
  }
  return rows;
}

export function kernelTable(gpu: GpuContext, rows: KernelRow[], title: string): string {
  const a = gpu.adapter;
  const f = (v: number, d: number) => v.toFixed(d);
  return [
    `${title}; adapter ${a.description || a.device || a.vendor}; ${gpu.flavour} kernels; tinybench medians`,
    "| kernel | shape | case | active | ms/call | MB read/call | GB/s | speed-up vs dense |",
    "|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.kernel} | ${r.shape} | ${r.case} | ${f(r.active_fraction, 2)} | ${f(r.ms_per_call, 4)} | ${f(r.bytes_per_call / 1e6, 2)} | ${f(r.gb_per_s, 2)} | ${f(r.speedup_vs_dense, 2)} |`,
    ),
  ].join("\n");
}
