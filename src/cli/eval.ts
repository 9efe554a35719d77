import { notice } from "./notice.js";
import { SingleBar, Presets } from "cli-progress";
import { perplexity } from "../engine/evaluate.js";
import { readTextFile, universalNewlines } from "../files.js";
import { loadModel } from "../node.js";
import { applySparsity, measuredSparsity, wantsSparsity, type SparsityFlags } from "./sparsity.js";

export interface EvalFlags extends SparsityFlags {
  context?: number;
  model?: string;
  data: string;
  maxTokens?: number;
  json?: boolean;
  keepCr?: boolean;
  kernels?: string;
  variant?: string;
}

/** A data file (evaluation, calibration) as Python reads text: universal newlines unless `keepCr`. */
export async function readDataText(path: string, keepCr = false): Promise<string> {
  const text = await readTextFile(path);
  return keepCr ? text : universalNewlines(text);
}

export async function runEval(flags: EvalFlags): Promise<void> {
  const text = (await readDataText(flags.data, flags.keepCr)).trim();
  wantsSparsity(flags);
  const lm = await loadModel(flags.model, { flavour: flags.kernels, context: flags.context, variants: flags.variant, notice });
  try {
    const level = await applySparsity(lm, flags);
    const ids = lm.tokenizer.encode(text, false);
    const total = Math.min(ids.length, flags.maxTokens ?? ids.length);
    const bar = new SingleBar(
      { format: "eval [{bar}] {value}/{total} tokens | {eta}s left", stream: process.stderr },
      Presets.shades_classic,
    );
    bar.start(total, 0);
    const t0 = performance.now();
    const r = await perplexity(lm.engine, ids, flags.maxTokens, (n) => bar.update(Math.min(n, total)));
    bar.stop();
    const seconds = (performance.now() - t0) / 1000;
    const sparsity = level ? await measuredSparsity(lm, level, flags.thresholds!) : null;
    if (flags.json) {
      const out = {
        model: lm.dir,
        data: flags.data,
        perplexity: r.perplexity,
        mean_nll: r.meanNll,
        tokens: r.tokens,
        windows: r.windows,
        seconds,
        sparsity,
      };
      process.stdout.write(JSON.stringify(out) + "\n");
    } else {
      const sp = sparsity ? `; sparsity ${(Number(sparsity.overall) * 100).toFixed(1)}% (target ${(level!.level * 100).toFixed(0)}%)` : "";
      process.stdout.write(
        `perplexity ${r.perplexity.toFixed(4)} over ${r.tokens} tokens in ${r.windows} windows (${seconds.toFixed(1)} s)${sp}\n`,
      );
    }
  } finally {
    await lm.close();
  }
}
