import { notice } from "./notice.js";
import { readFile } from "node:fs/promises";
import { SingleBar, Presets } from "cli-progress";
import { perplexity } from "../engine/evaluate.js";
import { CatsError } from "../errors.js";
import { loadModel } from "../node.js";
import { applySparsity, sparsityReport, wantsSparsity, type SparsityFlags } from "./sparsity.js";

export interface EvalFlags extends SparsityFlags {
  model?: string;
  data: string;
  maxTokens?: number;
  json?: boolean;
  kernels?: string;
  variant?: string;
}

export async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw new CatsError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

export async function runEval(flags: EvalFlags): Promise<void> {
  const text = (await readText(flags.data)).trim();
  wantsSparsity(flags);
  const lm = await loadModel(flags.model, { flavour: flags.kernels, variants: flags.variant, notice });
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
    const sparsity = level ? sparsityReport(level, await lm.engine.takeSparsityStats()) : null;
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
