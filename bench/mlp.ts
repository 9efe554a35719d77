/**
 * Microbenchmark of one MLP block on random f16 weights, one decode token: the dense kernels
 * against the CATS sparse kernels at 0/50/70/90% sparsity.
 *   node dist/bench/mlp.js [--shapes stories260K,llama2-7b] [--kernels cpu|gpu] [--time MS] [--json]
 */
import { Command } from "commander";
import { kernelFlavour, positiveInt } from "../src/cli/args.js";
import { createGpu } from "../src/gpu/device.js";
import { kernelTable, MLP_SHAPES, mlpCases } from "./mlp-cases.js";

const opts = new Command("bench-mlp")
  .option("--shapes <list>", `comma-separated: ${Object.keys(MLP_SHAPES).join(", ")}`, "stories260K,llama2-7b")
  .option("--kernels <flavour>", "cpu or gpu kernel variants", kernelFlavour)
  .option("--time <ms>", "tinybench time per task", positiveInt, 1500)
  .option("--json", "print JSON rows")
  .parse()
  .opts<{ shapes: string; kernels?: string; time: number; json?: boolean }>();

const gpu = await createGpu({ flavour: opts.kernels });
const rows = await mlpCases(gpu, opts.shapes.split(","), opts.time);
console.log(opts.json ? JSON.stringify(rows, null, 1) : kernelTable(gpu, rows, "MLP block, one token, random f16 weights"));
gpu.destroy();
process.exit(0);
