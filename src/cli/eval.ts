import { notice } from "./notice.js";
import { SingleBar, Presets } from "cli-progress";
import { sparsityMiss } from "../cats/thresholds.js";
import { readTextFile, universalNewlines } from "../files.js";
import { openModel, type ModelFlags } from "./model-flags.js";

export interface EvalFlags extends ModelFlags {
  data: string;
  maxTokens?: number;
  json?: boolean;
  keepCr?: boolean;
}

/** A data file (evaluation, calibration) as Python reads text: universal newlines unless `keepCr`. */
export async function readDataText(path: string, keepCr = false): Promise<string> {
  const text = await readTextFile(path);
  return keepCr ? text : universalNewlines(text);
}

/** `cats eval`: the library's eval() with a progress bar. */
export async function runEval(flags: EvalFlags): Promise<void> {
  const text = await readDataText(flags.data, flags.keepCr);
  // Evaluation runs batched passes only, so a first run measures just their kernels.
  const model = await openModel(flags, { tuneBatchedOnly: true });
  try {
    const bar = new SingleBar(
      { format: "eval [{bar}] {value}/{total} tokens | {eta}s left", stream: process.stderr },
      Presets.shades_classic,
    );
    const t0 = performance.now();
    const r = await model.eval(text, {
      maxTokens: flags.maxTokens,
      onProgress: (n, total) => (n === 0 ? bar.start(total, 0) : bar.update(n)),
    });
    bar.stop();
    const seconds = (performance.now() - t0) / 1000;
    const s = r.sparsity;
    if (s) {
      const miss = sparsityMiss({ level: s.level, thresholds: s.thresholds, source: s.source }, s.measured, flags.thresholds!);
      if (miss) notice(miss);
    }
    if (flags.json) {
      const out = {
        model: model.location,
        data: flags.data,
        perplexity: r.perplexity,
        mean_nll: r.meanNll,
        tokens: r.tokens,
        windows: r.windows,
        seconds,
        sparsity: s
          ? {
              target: s.level,
              thresholds_from: s.source,
              thresholds: s.thresholds,
              tokens: s.tokens,
              overall: s.measured,
              per_layer: s.perLayer,
            }
          : null,
      };
      process.stdout.write(JSON.stringify(out) + "\n");
    } else {
      const sp = s ? `; sparsity ${(s.measured * 100).toFixed(1)}% (target ${(s.level * 100).toFixed(0)}%)` : "";
      process.stdout.write(
        `perplexity ${r.perplexity.toFixed(4)} over ${r.tokens} tokens in ${r.windows} windows (${seconds.toFixed(1)} s)${sp}\n`,
      );
    }
  } finally {
    await model.dispose();
  }
}
