/**
 * `npm run bench:kernels`: tinybench microbenchmarks of the decode kernels — matrix-vector product
 * (one token) for f32 and f16 weights, then the MLP block dense vs sparse.
 *   node dist/bench/kernels.js [--kernels cpu|gpu] [--time MS] [--shapes ...] [--json]
 */
import { Command } from "commander";
import { Bench } from "tinybench";
import { kernelFlavour, positiveInt } from "../src/cli/args.js";
import { Usage } from "../src/gpu/flags.js";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { nodeKernelSource } from "../src/gpu/nodekernels.js";
import { encodeDispatches, PipelineCache, rowGrid, withSingleToken } from "../src/gpu/pipelines.js";
import { padCols } from "../src/engine/weights.js";
import { kernelTable, mlpCases, type KernelRow } from "./mlp-cases.js";

const opts = new Command("bench-kernels")
  .option("--kernels <flavour>", "cpu or gpu kernel variants", kernelFlavour)
  .option("--time <ms>", "tinybench time per task", positiveInt, 1000)
  .option("--shapes <list>", "MLP shapes", "stories260K,llama-110m")
  .option("--json", "print JSON rows")
  .parse()
  .opts<{ kernels?: string; time: number; shapes: string; json?: boolean }>();

/** y = W x for one token with the engine's matmul kernel, on uninitialised (zero) weights: only bytes and time matter here. */
async function matvecCases(gpu: GpuContext, timeMs: number): Promise<KernelRow[]> {
  const d = gpu.device;
  const pipes = new PipelineCache(gpu, nodeKernelSource);
  const cpu = gpu.flavour === "cpu";
  const rows: KernelRow[] = [];
  const shapes: [string, number, number][] = [
    ["4096 x 4096 (7B attention projection)", 4096, 4096],
    ["32000 x 768 (110M lm_head)", 32000, 768],
  ];
  for (const [label, R, C] of shapes) {
    for (const dtype of ["f32", "f16"] as const) {
      const elem = dtype === "f32" ? 4 : 2;
      const bytes = R * padCols(C) * elem;
      const storage = Usage.STORAGE | Usage.COPY_DST;
      const w = d.createBuffer({ size: bytes, usage: storage });
      const x = d.createBuffer({ size: 4 * padCols(C) * 4, usage: storage });
      const y = d.createBuffer({ size: 4 * padCols(R) * 4, usage: storage });
      const state = d.createBuffer({ size: 16, usage: storage });
      d.queue.writeBuffer(state, 0, new Uint32Array([0, 1, 0, 0]));
      const params = pipes.uniform([R, padCols(C) / 4, padCols(C) / 4, padCols(R), 0, 0, 0, 0]);
      const parts = ["common", `weights_${dtype}`, "matmul_params", ...(cpu ? ["matmul_rows"] : ["wg_reduce", "matmul_wg"])];
      const dispatch = withSingleToken(pipes, parts, [w, params, state, x, y], rowGrid(cpu, d.limits.maxComputeWorkgroupsPerDimension, R));
      const calls = Math.max(2, Math.round(5e7 / bytes));
      const bench = new Bench({ time: timeMs, warmup: true });
      bench.add(`${label} ${dtype}`, async () => {
        const enc = d.createCommandEncoder();
        const pass = enc.beginComputePass();
        for (let i = 0; i < calls; i++) encodeDispatches(pass, [dispatch], 1);
        pass.end();
        d.queue.submit([enc.finish()]);
        await d.queue.onSubmittedWorkDone();
      });
      await bench.run();
      const r = bench.tasks[0].result;
      if (r.state !== "completed") throw new Error(`${label}: ${r.state}`);
      const ms = r.latency.p50 / calls;
      rows.push({
        kernel: "matvec",
        shape: label,
        case: dtype,
        active_fraction: 1,
        ms_per_call: ms,
        bytes_per_call: bytes,
        gb_per_s: bytes / ms / 1e6,
        speedup_vs_dense: 1,
      });
      for (const b of [w, x, y, state]) b.destroy();
    }
  }
  gpu.check("matvec benchmark");
  return rows;
}

const gpu = await createGpu({ flavour: opts.kernels });
const rows = [...(await matvecCases(gpu, opts.time)), ...(await mlpCases(gpu, opts.shapes.split(","), opts.time))];
console.log(opts.json ? JSON.stringify(rows, null, 1) : kernelTable(gpu, rows, "Decode kernels, one token"));
gpu.destroy();
process.exit(0);
