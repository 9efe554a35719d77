import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { CatsError } from "../errors.js";
import { prepareOutputDir, regularFileStats, writeFileAtomic } from "../files.js";
import { resolveModelDir } from "../model/resolve.js";
import { SYNTH_SHAPES } from "../synth/shapes.js";
import { synthConfig, writeSynthWeights } from "../synth/synth.js";

export interface SynthFlags {
  shape: string;
  dtype: "f16" | "f32";
  out: string;
  seed: number;
  tokenizer: string;
}

/** Synthetic weights must never replace a real model's: only a directory cats synth wrote may be written over. */
async function refuseRealModel(dir: string): Promise<void> {
  let config: string;
  try {
    config = await readFile(join(dir, "config.json"), "utf8");
  } catch {
    return;
  }
  if (!/"cats_synthetic":\s*true/.test(config)) {
    throw new CatsError(`--out ${dir}: holds a model (config.json) that cats synth did not write; choose an empty directory`);
  }
}

export async function runSynth(flags: SynthFlags): Promise<void> {
  const shape = SYNTH_SHAPES[flags.shape];
  if (!shape) throw new CatsError(`--shape: expected one of ${Object.keys(SYNTH_SHAPES).join(", ")}, got "${flags.shape}"`);
  const tokDir = resolveModelDir(flags.tokenizer);
  await refuseRealModel(flags.out);
  await prepareOutputDir("--out", flags.out, [tokDir]);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    let bytes: Uint8Array;
    try {
      await regularFileStats(join(tokDir, f));
      bytes = await readFile(join(tokDir, f));
    } catch {
      throw new CatsError(`${join(tokDir, f)}: cannot copy the tokenizer (pass --tokenizer DIR with the Llama 2 tokenizer.json)`);
    }
    await writeFileAtomic(join(flags.out, f), bytes);
  }
  await writeFileAtomic(join(flags.out, "config.json"), JSON.stringify(synthConfig(flags.shape, shape), null, 2) + "\n");
  const bar = new SingleBar({ format: "synth [{bar}] {value}/{total} tensors", stream: process.stderr }, Presets.shades_classic);
  bar.start(1, 0);
  await writeSynthWeights(join(flags.out, "model.safetensors"), shape, flags.dtype === "f16" ? "F16" : "F32", flags.seed, (done, total) => {
    bar.setTotal(total);
    bar.update(done);
  });
  bar.stop();
  process.stdout.write(`wrote ${flags.out}: SYNTHETIC ${flags.shape} (${shape.like}), ${flags.dtype}, seed ${flags.seed}\n`);
}
