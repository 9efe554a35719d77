import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { CatsError } from "../errors.js";
import { modelInputFiles, prepareOutputDir, regularFileStats, writeFileAtomic, writeStreamAtomic } from "../files.js";
import { openCheckpoint, type Checkpoint } from "../model/checkpoint.js";
import { toFloat32 } from "../model/dtype.js";
import { directoryFiles } from "../model/nodefiles.js";
import { describeQuant, type QuantConfig } from "../model/quant-config.js";
import { resolveModelDir } from "../model/resolve.js";
import { safetensorsHeader } from "../model/safetensors-writer.js";
import type { FloatDtype } from "../model/safetensors.js";
import { gptqHolds, gptqShapes, packGptq, packQzeros } from "../quant/gptq-pack.js";
import { quantizeRtn } from "../quant/rtn.js";

export interface QuantizeFlags {
  model?: string;
  bits: 4 | 8;
  /** A group size, or "row" for one group per output row. */
  group?: number | "row";
  asym?: boolean;
  /** Quantize lm_head too (a tied one is the embedding): at few layers it is a large share of the bytes per token. */
  lmHead?: boolean;
  out: string;
}

/** The seven projections of every layer are quantized; embeddings, norms and (unless asked) lm_head keep their dtype. */
const LAYER_PROJECTION = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/;
const WITH_LM_HEAD = /^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)|lm_head)\.weight$/;
const WITH_EMBEDDING = /^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)|model\.embed_tokens)\.weight$/;

/** Files copied beside the weights so the output is a complete model directory. */
const COPIED = ["tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "generation_config.json"];

interface Planned {
  name: string;
  dtype: FloatDtype | "I32";
  shape: number[];
}

/**
 * The output tensors in file order: every tensor of the checkpoint, a projection replaced by its
 * GPTQ tensors; all qzeros go last, because the checkpoint format (v1's zero - 1 cannot hold an
 * asymmetric zero point of 0) is only known once every group is quantized.
 */
function plan(
  ckpt: Checkpoint,
  bits: 4 | 8,
  group: number | null,
  PROJECTION: RegExp,
): { body: Planned[]; zeros: Planned[]; projections: number } {
  const body: Planned[] = [];
  const zeros: Planned[] = [];
  let projections = 0;
  for (const t of ckpt.tensors.values()) {
    if (!PROJECTION.test(t.name)) {
      body.push({ name: t.name, dtype: t.dtype, shape: t.shape });
      continue;
    }
    projections++;
    const prefix = t.name.slice(0, -".weight".length);
    const shapes = gptqShapes(t.shape[0], t.shape[1], bits, group);
    body.push({ name: `${prefix}.qweight`, dtype: "I32", shape: shapes.qweight });
    body.push({ name: `${prefix}.scales`, dtype: "F16", shape: shapes.scales });
    body.push({ name: `${prefix}.g_idx`, dtype: "I32", shape: shapes.g_idx });
    zeros.push({ name: `${prefix}.qzeros`, dtype: "I32", shape: shapes.qzeros });
  }
  return { body, zeros, projections };
}

/** `cats quantize`: round-to-nearest GPTQ-layout quantization, one tensor in memory at a time. */
export async function runQuantize(flags: QuantizeFlags): Promise<void> {
  const dir = resolveModelDir(flags.model);
  const ckpt = await openCheckpoint(directoryFiles(dir));
  try {
    if (ckpt.config.quantization) {
      throw new CatsError(`${dir}: already quantized (${describeQuant(ckpt.config.quantization)}); quantize the float checkpoint`);
    }
    if (resolve(flags.out) === resolve(dir)) throw new CatsError(`--out ${flags.out}: is the input model's directory; choose another`);
    await prepareOutputDir("--out", flags.out, await modelInputFiles(dir));
    const group = flags.group === "row" ? null : (flags.group ?? (flags.bits === 8 ? null : 128));
    const sym = !flags.asym;
    // A tied lm_head is the embedding: --lm-head quantizes that table, which the embedding lookup
    // then reads quantized too. GPTQ loaders elsewhere never quantize an embedding, so the result is
    // marked as cats' own format.
    const quantEmbed = Boolean(flags.lmHead) && ckpt.config.tieWordEmbeddings;
    const PROJECTION = !flags.lmHead ? LAYER_PROJECTION : quantEmbed ? WITH_EMBEDDING : WITH_LM_HEAD;
    const layout = plan(ckpt, flags.bits, group, PROJECTION);
    const fits = [...ckpt.tensors.values()]
      .filter((t) => PROJECTION.test(t.name))
      .every((t) => gptqHolds(t.shape[0], t.shape[1], flags.bits, group));
    const zerosOf = new Map<string, Parameters<typeof packQzeros>[1]>();
    let zeroPointZero = false;

    const bar = new SingleBar(
      { format: "quantize [{bar}] {value}/{total} tensors {name}", stream: process.stderr },
      Presets.shades_classic,
    );
    bar.start(ckpt.tensors.size, 0, { name: "" });
    let format: QuantConfig["format"] = "gptq";
    try {
      await writeStreamAtomic(join(flags.out, "model.safetensors"), async (handle) => {
        await handle.write(safetensorsHeader([...layout.body, ...layout.zeros], { format: "pt" }));
        let done = 0;
        for (const t of ckpt.tensors.values()) {
          bar.update(done, { name: t.name });
          if (!PROJECTION.test(t.name)) {
            await handle.write(await ckpt.read(t.name));
          } else {
            if (t.dtype === "I32") throw new CatsError(`${t.source.name}: tensor "${t.name}": expected a float weight, got I32`);
            const [rows, cols] = t.shape;
            const m = quantizeRtn(toFloat32(await ckpt.read(t.name), t.dtype), rows, cols, flags.bits, group, sym);
            zeroPointZero ||= m.zeros.includes(0);
            const prefix = t.name.slice(0, -".weight".length);
            // Format-independent tensors now; qzeros (small) at the end.
            for (const part of packGptq(prefix, m, "gptq").filter((p) => !p.name.endsWith(".qzeros"))) await handle.write(part.data);
            zerosOf.set(prefix, { bits: m.bits, rows: m.rows, groups: m.groups, zeros: m.zeros });
          }
          done++;
        }
        format = !fits || quantEmbed ? "cats" : zeroPointZero ? "gptq_v2" : "gptq";
        for (const z of layout.zeros) {
          const prefix = z.name.slice(0, -".qzeros".length);
          await handle.write(packQzeros(prefix, zerosOf.get(prefix)!, format).data);
        }
        bar.update(ckpt.tensors.size, { name: "" });
      });
    } finally {
      bar.stop();
    }

    const quantization = {
      quant_method: "gptq",
      bits: flags.bits,
      group_size: group ?? -1,
      sym,
      desc_act: false,
      static_groups: false,
      true_sequential: true,
      damp_percent: 0,
      checkpoint_format: format,
      lm_head: Boolean(flags.lmHead),
      meta: { quantizer: ["cats quantize (round-to-nearest, AutoGPTQ's arithmetic)"] },
    };
    const config = JSON.parse(ckpt.configText) as Record<string, unknown>;
    await writeFileAtomic(join(flags.out, "config.json"), JSON.stringify({ ...config, quantization_config: quantization }, null, 2) + "\n");
    await writeFileAtomic(join(flags.out, "quantize_config.json"), JSON.stringify(quantization, null, 2) + "\n");
    for (const name of COPIED) {
      const from = join(dir, name);
      try {
        await regularFileStats(from);
      } catch {
        continue;
      }
      await writeFileAtomic(join(flags.out, name), await readFile(from));
    }
    const summary = describeQuant({ bits: flags.bits, groupSize: group, sym, format });
    process.stdout.write(`wrote ${flags.out}: ${layout.projections} projections at ${summary}\n`);
  } finally {
    await ckpt.close();
  }
}
