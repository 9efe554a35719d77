import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { CatsError } from "../errors.js";
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

export async function runSynth(flags: SynthFlags): Promise<void> {
  const shape = SYNTH_SHAPES[flags.shape];
  if (!shape) throw new CatsError(`--shape: expected one of ${Object.keys(SYNTH_SHAPES).join(", ")}, got "${flags.shape}"`);
  const tokDir = resolveModelDir(flags.tokenizer);
  await mkdir(flags.out, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    try {
      await copyFile(join(tokDir, f), join(flags.out, f));
    } catch {
      throw new CatsError(`${join(tokDir, f)}: cannot copy the tokenizer (pass --tokenizer DIR with the Llama 2 tokenizer.json)`);
    }
  }
  await writeFile(join(flags.out, "config.json"), JSON.stringify(synthConfig(flags.shape, shape), null, 2) + "\n");
  const bar = new SingleBar({ format: "synth [{bar}] {value}/{total} tensors", stream: process.stderr }, Presets.shades_classic);
  bar.start(1, 0);
  await writeSynthWeights(join(flags.out, "model.safetensors"), shape, flags.dtype === "f16" ? "F16" : "F32", flags.seed, (done, total) => {
    bar.setTotal(total);
    bar.update(done);
  });
  bar.stop();
  process.stdout.write(`wrote ${flags.out}: SYNTHETIC ${flags.shape} (${shape.like}), ${flags.dtype}, seed ${flags.seed}\n`);
}
