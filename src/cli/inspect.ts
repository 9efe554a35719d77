import { join } from "node:path";
import { loadModel } from "../node.js";
import { prepareOutputDir, writeFileAtomic } from "../files.js";
import { resolveModelDir } from "../model/resolve.js";
import { notice } from "./notice.js";
import { withTuningBar } from "./tuning-bar.js";

export interface InspectFlags {
  context?: number;
  model?: string;
  out?: string;
  step?: string[];
  json?: boolean;
  kernels?: string;
  variant?: string;
}

/** A step's name as a file name: "layer 3 o_proj" -> "layer3.o_proj". */
const fileName = (name: string): string => name.replace(/^layer (\d+) /, "layer$1.").replace(/\s+/g, "_");

/**
 * The debug path: runs the prompt through the batched forward pass and reports what every named
 * step wrote (or only the --step ones): a summary, and with --out each tensor as raw float32 rows
 * plus an index.json, for scripts/compare-ref.py to set beside ../shared/tools/ref_llama.py.
 */
export async function runInspect(prompt: string, flags: InspectFlags): Promise<void> {
  if (flags.out) await prepareOutputDir("--out", flags.out, [resolveModelDir(flags.model)]);
  const lm = await withTuningBar((onTuneProgress) =>
    loadModel(flags.model, { flavour: flags.kernels, context: flags.context, variants: flags.variant, notice, onTuneProgress }),
  );
  try {
    const ids = lm.tokenizer.encode(prompt);
    const tensors = await lm.engine.inspect(ids, flags.step && flags.step.length > 0 ? flags.step : undefined);
    const index = tensors.map((t) => ({
      name: t.name,
      file: `${fileName(t.name)}.f32`,
      rows: t.rows.length,
      width: t.rows[0]?.length ?? 0,
    }));
    if (flags.out) {
      for (const [i, t] of tensors.entries()) {
        const data = new Float32Array(index[i].rows * index[i].width);
        t.rows.forEach((row, r) => data.set(row, r * index[i].width));
        await writeFileAtomic(join(flags.out, index[i].file), new Uint8Array(data.buffer));
      }
      await writeFileAtomic(
        join(flags.out, "index.json"),
        JSON.stringify({ model: lm.dir, prompt, ids, dtype: "float32", tensors: index }, null, 1) + "\n",
      );
    }
    if (flags.json) {
      process.stdout.write(
        JSON.stringify({ model: lm.dir, prompt, ids, tensors: tensors.map((t) => ({ name: t.name, rows: t.rows.map((r) => [...r]) })) }) +
          "\n",
      );
      return;
    }
    process.stdout.write(`${lm.dir}: ${ids.length} tokens ${JSON.stringify(ids)}\n`);
    for (const [i, t] of tensors.entries()) {
      const last = t.rows[t.rows.length - 1];
      const maxAbs = t.rows.reduce((m, row) => row.reduce((a, v) => Math.max(a, Math.abs(v)), m), 0);
      const head = [...last.slice(0, 4)].map((v) => v.toFixed(5)).join(", ");
      process.stdout.write(
        `${t.name.padEnd(20)} ${String(index[i].rows).padStart(4)} x ${String(index[i].width).padEnd(6)} max|x| ${maxAbs.toExponential(3)}  last row [${head}, ...]\n`,
      );
    }
  } finally {
    await lm.close();
  }
}
