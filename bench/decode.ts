/**
 * Decode speed of the dense engine: R runs of prefill + N greedy steps, one submission per token
 * (as `cats generate` streams) and with steps chained in one submission. Prints medians.
 *   node dist/bench/decode.js [--model DIR] [--tokens N] [--runs R] [--chain C] [--kernels cpu|gpu]
 */
import { Command } from "commander";
import { positiveInt, kernelFlavour } from "../src/cli/args.js";
import { loadModel } from "../src/node.js";
import { median, quantile } from "./stats.js";

const opts = new Command("bench-decode")
  .option("--model <dir>", "model directory or name")
  .option("--tokens <n>", "greedy tokens per run", positiveInt, 128)
  .option("--runs <r>", "measured runs", positiveInt, 5)
  .option("--chain <c>", "steps per submission in chained mode", positiveInt, 16)
  .option("--kernels <flavour>", "cpu or gpu kernel variants", kernelFlavour)
  .parse()
  .opts<{ model?: string; tokens: number; runs: number; chain: number; kernels?: string }>();

// Dense only: W_up in row blocks where they apply (UpLayout), as cats generate decodes without CATS.
const lm = await loadModel(opts.model, { flavour: opts.kernels, upLayout: "blocks" });
const prompt = lm.tokenizer.encode("Once upon a time");
const tokens = Math.min(opts.tokens, lm.engine.contextLength - prompt.length - 1);

async function run(chain: number): Promise<number> {
  lm.engine.reset();
  await lm.engine.prefill(prompt);
  const t0 = performance.now();
  for (let done = 0; done < tokens; done += chain) {
    if (chain === 1) await lm.engine.decode();
    else await lm.engine.decodeGreedy(Math.min(chain, tokens - done));
  }
  return (performance.now() - t0) / tokens;
}

const modes: [string, number][] = [
  ["one submission per token", 1],
  [`${opts.chain} steps per submission`, opts.chain],
];
const samples = new Map<string, number[]>(modes.map(([m]) => [m, []]));
for (const [, chain] of modes) await run(chain); // warm-up
for (let r = 0; r < opts.runs; r++) for (const [m, chain] of modes) samples.get(m)!.push(await run(chain));

const a = lm.gpu.adapter;
console.log(
  `model ${lm.dir}${lm.checkpoint.config.synthetic ? " (synthetic)" : ""}; adapter ${a.description || a.device}; ${lm.gpu.flavour} kernels; ${tokens} tokens x ${opts.runs} runs`,
);
console.log("| mode | ms/token median | p10 | p90 | tok/s (median) |\n|---|---|---|---|---|");
for (const [m] of modes) {
  const s = samples.get(m)!;
  console.log(
    `| ${m} | ${median(s).toFixed(3)} | ${quantile(s, 0.1).toFixed(3)} | ${quantile(s, 0.9).toFixed(3)} | ${(1000 / median(s)).toFixed(1)} |`,
  );
}
await lm.close();
process.exit(0);
