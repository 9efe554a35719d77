import { basename, join } from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { notice } from "./notice.js";
import { withTuningBar } from "./tuning-bar.js";
import type { BenchFlags } from "./bench.js";
import { benchContext, benchMeter, weightsOf } from "./bench-host.js";
import { readDataText } from "./eval.js";
import { benchPrompt, checkChain, runArms } from "../sparsity-bench/run.js";
import { buildCompareReport, compareMarkdown, type CompareModel } from "../sparsity-bench/compare.js";
import { perplexity } from "../engine/evaluate.js";
import { DEFAULT_MAX_CHAIN } from "../engine/llama.js";
import { CatsError } from "../errors.js";
import { prepareOutputDir, writeFileAtomic } from "../files.js";
import { loadModel, modelMemory, type LoadedModel } from "../node.js";

/**
 * `cats bench --model A --compare B,C`: A, B and C decode the same prompt dense, run by run in turn,
 * and each is reported against A (its weight bytes, speed paired by round, greedy agreement), e.g. an
 * f16 checkpoint against its `cats quantize` outputs. The models must share A's tokenizer, so that
 * one prompt means the same to all; each is loaded with W_up in row blocks, as dense decoding runs.
 */
export async function runCompareCommand(flags: BenchFlags, compare: string[]): Promise<void> {
  checkChain(flags.chain, DEFAULT_MAX_CHAIN);
  const evalText = flags.evalData ? (await readDataText(flags.evalData, flags.keepCr)).trim() : null;
  await prepareOutputDir("--out", flags.out);
  const models: LoadedModel[] = [];
  try {
    let alongside = 0;
    let ids: number[] = [];
    for (const dir of [flags.model, ...compare]) {
      const lm = await withTuningBar((onTuneProgress) =>
        loadModel(dir, {
          flavour: flags.kernels,
          context: flags.context,
          variants: flags.variant,
          upLayout: "blocks",
          alongsideBytes: alongside,
          notice,
          onTuneProgress,
        }),
      );
      models.push(lm);
      // Checked as each model loads, before the next (minutes for a large one) is read.
      const prompt = benchPrompt(
        (t, b) => lm.tokenizer.encode(t, b),
        lm.checkpoint.config.bosTokenId,
        flags.promptTokens,
        evalText ?? undefined,
      );
      if (models.length === 1) ids = prompt;
      else checkSameTokenizer(models[0], lm, ids, prompt);
      const m = modelMemory(lm.checkpoint, "blocks");
      alongside += m.weights + m.kv;
    }
    const first = models[0];
    const metered = await benchMeter(flags, first.gpu);
    const names = models.map((lm) => basename(lm.dir));
    const bar = new SingleBar({ format: "bench [{bar}] {value}/{total} runs | {model}", stream: process.stderr }, Presets.shades_classic);
    bar.start(models.length * flags.runs, 0, { model: "-" });
    let done = 0;
    const samples = await runArms(
      models.map((lm) => ({
        engine: lm.engine,
        level: { level: 0, thresholds: new Array<number>(lm.checkpoint.config.numLayers).fill(0), source: "dense" },
      })),
      {
        promptIds: ids,
        tokens: flags.tokens,
        runs: flags.runs,
        chain: flags.chain,
        meter: metered.meter,
        onRun: (i) => bar.update(++done, { model: names[i] }),
      },
    );
    bar.stop();
    const rows: CompareModel[] = [];
    for (const lm of models) {
      rows.push({
        name: basename(lm.dir),
        synthetic: lm.checkpoint.config.synthetic,
        weights: weightsOf(lm),
        weightBytesPerToken: lm.engine.weightBytesPerToken(null),
        perplexity: evalText ? (await perplexity(lm.engine, lm.tokenizer.encode(evalText, false), flags.evalTokens)).perplexity : null,
      });
    }
    const report = buildCompareReport(samples, rows, benchContext(first.gpu, flags, ids.length, metered));
    // Results reach stdout before the files are written, so a failed write loses nothing.
    process.stdout.write(flags.json ? JSON.stringify(report) + "\n" : compareMarkdown(report));
    await writeFileAtomic(join(flags.out, "bench.json"), JSON.stringify(report, null, 1) + "\n");
    await writeFileAtomic(join(flags.out, "bench.md"), compareMarkdown(report));
  } finally {
    for (const lm of models) await lm.close();
  }
}

/** One prompt must mean the same to every model: the same vocabulary, and the same ids for the prompt's text (`theirs`). */
function checkSameTokenizer(first: LoadedModel, other: LoadedModel, ids: number[], theirs: number[]): void {
  const where = `--compare ${other.dir}`;
  const [v0, v1] = [first.checkpoint.config.vocabSize, other.checkpoint.config.vocabSize];
  if (v0 !== v1)
    throw new CatsError(`${where}: config.json vocab_size ${v1}, expected ${v0} as --model ${first.dir} has (one prompt for every model)`);
  if (theirs.length !== ids.length || theirs.some((id, i) => id !== ids[i])) {
    throw new CatsError(`${where}: its tokenizer encodes the prompt differently from --model ${first.dir}'s; expected the same tokenizer`);
  }
}
