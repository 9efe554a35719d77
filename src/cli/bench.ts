import { notice } from "./notice.js";
import { withTuningBar } from "./tuning-bar.js";
import { basename } from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { buildReport, levelWeightBytes, markdownTable } from "../sparsity-bench/report.js";
import { writeReport } from "../sparsity-bench/write.js";
import { benchPrompt, checkChain, runBench } from "../sparsity-bench/run.js";
import { checkThresholdsFile, thresholdsForLevel, type LayerThresholds, type ThresholdsFile } from "../cats/thresholds.js";
import type { EnergySource } from "../energy/meter.js";
import { perplexity } from "../engine/evaluate.js";
import { CatsError } from "../errors.js";
import { loadModel } from "../node.js";
import { benchContext, benchMeter, weightsOf } from "./bench-host.js";
import { DEFAULT_MAX_CHAIN } from "../engine/llama.js";
import { readDataText } from "./eval.js";
import { prepareOutputDir } from "../files.js";
import { readThresholdsFile } from "./sparsity.js";
import { runCompareCommand } from "./bench-compare.js";

export interface BenchFlags {
  context?: number;
  keepCr?: boolean;
  model?: string;
  thresholds?: string;
  sparsity: number[];
  promptTokens: number;
  tokens: number;
  runs: number;
  chain: number;
  evalData?: string;
  evalTokens: number;
  json?: boolean;
  out: string;
  kernels?: string;
  variant?: string;
  /** Other models to decode dense beside --model, run by run in turn (cats bench --compare). */
  compare?: string[];
  energy?: EnergySource;
  wattsPerCore?: number;
  pue?: number;
}

export async function runBenchCommand(
  flags: BenchFlags,
  command?: { getOptionValueSource(key: string): string | undefined },
): Promise<void> {
  if (flags.compare) return runCompareCommand(flags, flags.compare);
  const denseOnly = !flags.thresholds && command?.getOptionValueSource("sparsity") === "default";
  if (denseOnly) flags = { ...flags, sparsity: [0] };
  const wantsSparse = flags.sparsity.some((l) => l > 0);
  if (wantsSparse && !flags.thresholds) throw new CatsError("--sparsity levels above 0 need --thresholds FILE (from cats calibrate)");
  // Checked before the model loads (minutes for a large one); runBench checks it against the engine too.
  checkChain(flags.chain, DEFAULT_MAX_CHAIN);
  const evalText = flags.evalData ? (await readDataText(flags.evalData, flags.keepCr)).trim() : null;
  await prepareOutputDir("--out", flags.out);
  const lm = await withTuningBar((onTuneProgress) =>
    loadModel(flags.model, {
      flavour: flags.kernels,
      context: flags.context,
      variants: flags.variant,
      // Each level as a user would decode it: dense with W_up in row blocks, CATS with W_up in rows (UpLayout).
      upLayout: wantsSparse ? "both" : "blocks",
      notice,
      onTuneProgress,
    }),
  );
  try {
    let file: ThresholdsFile | null = null;
    if (flags.thresholds) file = await checkThresholdsFile(await readThresholdsFile(flags.thresholds), flags.thresholds, lm.checkpoint);
    const levels: LayerThresholds[] = flags.sparsity.map((k) =>
      k === 0
        ? { level: 0, thresholds: new Array(lm.checkpoint.config.numLayers).fill(0), source: "dense" }
        : thresholdsForLevel(file!, k, flags.thresholds!),
    );
    const ids = benchPrompt(
      (t, b) => lm.tokenizer.encode(t, b),
      lm.checkpoint.config.bosTokenId,
      flags.promptTokens,
      evalText ?? undefined,
    );
    const metered = await benchMeter(flags, lm.gpu);
    const { meter } = metered;
    const bar = new SingleBar(
      { format: "bench [{bar}] {value}/{total} runs | sparsity {level}", stream: process.stderr },
      Presets.shades_classic,
    );
    bar.start(levels.length * flags.runs, 0, { level: "-" });
    let done = 0;
    const samples = await runBench(lm.engine, {
      promptIds: ids,
      tokens: flags.tokens,
      runs: flags.runs,
      chain: flags.chain,
      levels,
      meter,
      onRun: (i) => bar.update(++done, { level: levels[i].level }),
    });
    bar.stop();
    let ppl: Map<number, number> | undefined;
    if (evalText) {
      ppl = new Map();
      const evalIds = lm.tokenizer.encode(evalText, false);
      for (const l of levels) {
        lm.engine.setThresholds(l.source === "dense" ? null : l.thresholds);
        ppl.set(l.level, (await perplexity(lm.engine, evalIds, flags.evalTokens)).perplexity);
      }
      lm.engine.setThresholds(null);
    }
    const report = buildReport(samples, {
      ...benchContext(lm.gpu, flags, ids.length, metered),
      modelName: basename(lm.dir),
      weightFormat: weightsOf(lm),
      synthetic: lm.checkpoint.config.synthetic,
      weightBytes: levelWeightBytes(samples, (f) => lm.engine.weightBytesPerToken(f)),
      perplexity: ppl,
    });
    // Results reach stdout before the files are written, so a failed write loses nothing.
    process.stdout.write(flags.json ? JSON.stringify(report) + "\n" : markdownTable(report));
    await writeReport(flags.out, report);
    if (denseOnly) notice("no --thresholds, so dense only (run cats calibrate for sparse levels)");
  } finally {
    await lm.close();
  }
}
