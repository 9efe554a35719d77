import { basename } from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { buildReport, levelWeightBytes } from "../bench/report.js";
import { writeReport } from "../bench/write.js";
import { runBench } from "../bench/run.js";
import { checkThresholdsFile, thresholdsForLevel, type LayerThresholds, type ThresholdsFile } from "../cats/thresholds.js";
import type { EnergySource } from "../energy/meter.js";
import { chooseMeter } from "../energy/select.js";
import { perplexity } from "../engine/evaluate.js";
import { CatsError } from "../errors.js";
import { loadModel, type LoadedModel } from "../node.js";
import { readText } from "./eval.js";
import { readThresholdsFile } from "./sparsity.js";

export interface BenchFlags {
  model?: string;
  thresholds?: string;
  sparsity: number[];
  promptTokens: number;
  tokens: number;
  runs: number;
  evalData?: string;
  evalTokens: number;
  json?: boolean;
  out: string;
  kernels?: string;
  energy?: EnergySource;
  wattsPerCore?: number;
  pue?: number;
}

export function sparsityList(value: string): number[] {
  const levels = value.split(",").map((s) => Number(s.trim()));
  if (levels.some((l) => !Number.isFinite(l) || l < 0 || l >= 1))
    throw new CatsError(`--sparsity: expected comma-separated levels in [0, 1), got "${value}"`);
  return [...new Set([0, ...levels])].sort((a, b) => a - b);
}

const STORY = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. ";

function promptIds(lm: LoadedModel, n: number, evalText: string | null): number[] {
  const source = lm.tokenizer.encode(evalText ?? STORY.repeat(Math.ceil(n / 8) + 1), false);
  if (source.length < n - 1) throw new CatsError(`--prompt-tokens ${n}: the text gives only ${source.length} tokens`);
  const bos = lm.checkpoint.config.bosTokenId;
  return bos === null ? source.slice(0, n) : [bos, ...source.slice(0, n - 1)];
}

export async function runBenchCommand(
  flags: BenchFlags,
  command?: { getOptionValueSource(key: string): string | undefined },
): Promise<void> {
  if (!flags.thresholds && command?.getOptionValueSource("sparsity") === "default") {
    process.stderr.write("cats bench: no --thresholds, so dense only (run cats calibrate for sparse levels)\n");
    flags = { ...flags, sparsity: [0] };
  }
  const wantsSparse = flags.sparsity.some((l) => l > 0);
  if (wantsSparse && !flags.thresholds) throw new CatsError("--sparsity levels above 0 need --thresholds FILE (from cats calibrate)");
  const evalText = flags.evalData ? (await readText(flags.evalData)).trim() : null;
  const lm = await loadModel(flags.model, { flavour: flags.kernels });
  try {
    let file: ThresholdsFile | null = null;
    if (flags.thresholds) file = await checkThresholdsFile(await readThresholdsFile(flags.thresholds), flags.thresholds, lm.checkpoint);
    const levels: LayerThresholds[] = flags.sparsity.map((k) =>
      k === 0
        ? { level: 0, thresholds: new Array(lm.checkpoint.config.numLayers).fill(0), source: "dense" }
        : thresholdsForLevel(file!, k, flags.thresholds!),
    );
    const ids = promptIds(lm, flags.promptTokens, evalText);
    const nvidia = /nvidia/i.test(`${lm.gpu.adapter.vendor} ${lm.gpu.adapter.description}`);
    const { meter, unavailable } = await chooseMeter({
      source: flags.energy,
      nvidiaAdapter: nvidia,
      estimate: {
        ...(flags.wattsPerCore !== undefined ? { wattsPerCore: flags.wattsPerCore } : {}),
        ...(flags.pue !== undefined ? { pue: flags.pue } : {}),
      },
    });
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
      levels,
      meter,
      onRun: (level) => bar.update(++done, { level }),
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
    const a = lm.gpu.adapter;
    const report = buildReport(samples, {
      runtime: `node ${process.version} + Dawn (webgpu npm)`,
      modelName: basename(lm.dir),
      synthetic: lm.checkpoint.config.synthetic,
      adapter: a.description || a.device || a.vendor,
      kernels: lm.gpu.flavour,
      promptTokens: ids.length,
      tokens: flags.tokens,
      runs: flags.runs,
      meter,
      unavailable,
      weightBytes: levelWeightBytes(samples, (f) => lm.engine.weightBytesPerToken(f)),
      perplexity: ppl,
    });
    const md = await writeReport(flags.out, report);
    process.stdout.write(flags.json ? JSON.stringify(report) + "\n" : md);
  } finally {
    await lm.close();
  }
}
