/**
 * Microbenchmark of one MLP block on random f16 weights, one decode token: the dense kernels
 * against the CATS sparse kernels at 0/50/70/90% sparsity. Shows that the bytes of W_up and W_down
 * read, and the time, scale with the active fraction.
 *   node dist/bench/mlp.js [--shapes stories260K,llama2-7b] [--kernels cpu|gpu] [--time MS]
 */
import { Command } from "commander";
import { Bench } from "tinybench";
import { kernelFlavour, positiveInt } from "../src/cli/args.js";
import { createMlpRunner, type MlpPath } from "../src/engine/mlp-runner.js";
import { seededRandom } from "../src/engine/sampling.js";
import { quantileOfSorted } from "../src/cats/quantiles.js";
import { createGpu } from "../src/gpu/device.js";
import { nodeKernelSource } from "../src/gpu/nodekernels.js";

const SHAPES: Record<string, { hidden: number; inter: number }> = {
  stories260K: { hidden: 64, inter: 172 },
  "llama-110m": { hidden: 768, inter: 2048 },
  "llama2-7b": { hidden: 4096, inter: 11008 },
};

const opts = new Command("bench-mlp")
  .option("--shapes <list>", `comma-separated: ${Object.keys(SHAPES).join(", ")}`, "stories260K,llama2-7b")
  .option("--kernels <flavour>", "cpu or gpu kernel variants", kernelFlavour)
  .option("--time <ms>", "tinybench time per task", positiveInt, 1500)
  .option("--json", "print JSON rows")
  .parse()
  .opts<{ shapes: string; kernels?: string; time: number; json?: boolean }>();

const gpu = await createGpu({ flavour: opts.kernels });
const rows: Record<string, unknown>[] = [];
for (const name of opts.shapes.split(",")) {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown shape ${name}`);
  const { hidden: H, inter: I } = shape;
  const runner = await createMlpRunner(gpu, nodeKernelSource, { ...shape, f16: true, seed: 1 });
  const random = seededRandom(2);
  const h = Array.from({ length: H }, () => random() * 2 - 1);
  const x0 = new Array(H).fill(0);
  // |silu(gate)| of this input on the CPU: thresholds at its quantiles give exact active fractions.
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
  const bench = new Bench({ time: opts.time, warmup: true });
  for (const c of cases) {
    const threshold = c.level === null ? null : c.level === 0 ? 0 : quantileOfSorted(absActs, c.level);
    bench.add(c.label, () => runner.time(calls, c.path), { beforeAll: () => runner.load(h, x0, threshold) });
  }
  await runner.takeActiveTotal();
  await bench.run();
  let denseMs = NaN;
  for (const [i, task] of bench.tasks.entries()) {
    const c = cases[i];
    const r = task.result;
    if (r.state !== "completed") throw new Error(`${c.label}: ${r.state}`);
    const ms = r.latency.p50 / calls;
    const active = c.path === "dense" ? I : I - Math.round((c.level ?? 0) * I);
    const bytes = 2 * H * I + 2 * 2 * H * active; // f16: W_gate always, W_up and W_down rows of active neurons
    if (c.path === "dense") denseMs = ms;
    rows.push({ shape: name, hidden: H, inter: I, kernels: gpu.flavour, case: c.label, active_fraction: active / I, ms_per_call: ms, bytes_per_call: bytes, gb_per_s: bytes / ms / 1e6, speedup_vs_dense: denseMs / ms, samples: r.latency.samplesCount });
  }
  runner.destroy();
}
if (opts.json) {
  process.stdout.write(JSON.stringify(rows, null, 1) + "\n");
} else {
  const a = gpu.adapter;
  console.log(`MLP block, one token, random f16 weights; adapter ${a.description || a.device}; ${gpu.flavour} kernels; tinybench medians`);
  console.log("| shape (hidden x inter) | case | active | ms/call | MB read/call | GB/s | speed-up vs dense |\n|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const f = (v: unknown, d: number) => (v as number).toFixed(d);
    console.log(`| ${r.shape} (${r.hidden} x ${r.inter}) | ${r.case} | ${f(r.active_fraction, 2)} | ${f(r.ms_per_call, 4)} | ${f((r.bytes_per_call as number) / 1e6, 2)} | ${f(r.gb_per_s, 2)} | ${f(r.speedup_vs_dense, 2)} |`);
  }
}
gpu.destroy();
process.exit(0);
