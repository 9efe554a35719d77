import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { checkThresholdsFile, thresholdsForLevel } from "../cats/thresholds.js";
import { CatsError } from "../errors.js";
import { buildLlamaOnnx, exportWeightBytes, type ExportDtype, type WeightSink } from "../export/llama-onnx.js";
import { onnx, type Placement } from "../export/onnx-graph.js";
import { modelInputFiles, openRegularFile, prepareOutputDir, writeFileAtomic } from "../files.js";
import { openCheckpoint } from "../model/checkpoint.js";
import { directoryFiles } from "../model/nodefiles.js";
import { resolveModelDir } from "../model/resolve.js";
import { readThresholdsFile, wantsSparsity, type SparsityFlags } from "./sparsity.js";

export interface ExportFlags extends SparsityFlags {
  model?: string;
  dtype: ExportDtype;
  out: string;
  externalData?: boolean;
  json?: boolean;
}

/** Protobuf caps a message at 2 GiB; past ~1.5 GB of weights they go to a side file, as exporters do. */
export const EXTERNAL_DATA_BYTES = 1.5e9;

/** Alignment of each tensor in the external data file (lets readers map it directly). */
const ALIGN = 64;

/** Files besides the weights that transformers.js reads from a model directory, copied when present. */
const COPIED = [
  "tokenizer.json",
  "tokenizer_config.json",
  "tokenizer.model",
  "special_tokens_map.json",
  "added_tokens.json",
  "chat_template.jinja",
];

async function copyFile(from: string, to: string): Promise<void> {
  const { handle } = await openRegularFile(from);
  let bytes: Uint8Array;
  try {
    bytes = await handle.readFile();
  } finally {
    await handle.close();
  }
  await writeFileAtomic(to, bytes);
}

// encode() hands over a fresh buffer per tensor, so it is kept as it is, not copied.
const inlineSink: WeightSink = { place: async (bytes) => ({ raw: bytes }) };

/** Writes each tensor to the data file as it comes, so only one tensor is in memory at a time. */
async function externalSink(path: string, location: string): Promise<WeightSink & { close(): Promise<void> }> {
  const handle = await open(path, "w").catch((e: NodeJS.ErrnoException) => {
    throw new CatsError(`${path}: cannot write (${e.code ?? e.message})`);
  });
  let offset = 0;
  return {
    async place(bytes): Promise<Placement> {
      offset = Math.ceil(offset / ALIGN) * ALIGN;
      await handle.write(bytes, 0, bytes.length, offset);
      const at = offset;
      offset += bytes.length;
      return { location, offset: at, length: bytes.length };
    },
    close: () => handle.close(),
  };
}

export async function runExport(flags: ExportFlags): Promise<void> {
  const sparse = wantsSparsity(flags);
  const dir = resolveModelDir(flags.model);
  const started = performance.now();
  const ckpt = await openCheckpoint(directoryFiles(dir));
  try {
    let thresholds: number[] | null = null;
    if (sparse) {
      const file = await checkThresholdsFile(await readThresholdsFile(flags.thresholds!), flags.thresholds!, ckpt);
      const level = thresholdsForLevel(file, flags.sparsity!, flags.thresholds!);
      // Level 0 is the dense model: no mask in the graph.
      thresholds = level.source === "dense" ? null : level.thresholds;
    }
    // Inputs are all checked (headers, thresholds) and every output path too before any weight is read.
    const inputs = [dir, ...(await modelInputFiles(dir)), ...(flags.thresholds ? [flags.thresholds] : [])];
    await prepareOutputDir("--out", flags.out, inputs);
    const onnxDir = join(flags.out, "onnx");
    await prepareOutputDir("--out", onnxDir, inputs);
    const base = flags.dtype === "f16" ? "model_fp16.onnx" : "model.onnx";
    const weightBytes = exportWeightBytes(ckpt, flags.dtype);
    const external = flags.externalData ?? weightBytes > EXTERNAL_DATA_BYTES;
    const dataName = `${base}_data`;
    const dataTmp = join(onnxDir, `${dataName}.tmp-${process.pid}`);
    const sink = external ? await externalSink(dataTmp, dataName) : null;
    let bytes: Uint8Array;
    try {
      const model = await buildLlamaOnnx(ckpt, { dtype: flags.dtype, thresholds, producerVersion: "0.1.0" }, sink ?? inlineSink);
      await sink?.close();
      bytes = onnx.ModelProto.encode(model).finish();
      if (sink) await rename(dataTmp, join(onnxDir, dataName));
    } catch (e) {
      await sink?.close().catch(() => {});
      if (sink) await unlink(dataTmp).catch(() => {});
      if (e instanceof RangeError)
        throw new CatsError(`the model is too large for one ONNX file (${weightBytes} bytes of weights); pass --external-data`);
      throw e;
    }
    await writeFileAtomic(join(onnxDir, base), bytes);

    await writeFileAtomic(join(flags.out, "config.json"), ckpt.configText);
    const genPath = join(dir, "generation_config.json");
    if (await ckpt.files.exists("generation_config.json")) await copyFile(genPath, join(flags.out, "generation_config.json"));
    else {
      const c = ckpt.config;
      const eos = c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds;
      const gen = { bos_token_id: c.bosTokenId, eos_token_id: eos, max_length: c.maxPositions };
      await writeFileAtomic(join(flags.out, "generation_config.json"), JSON.stringify(gen, null, 2) + "\n");
    }
    const copied: string[] = [];
    for (const name of COPIED) {
      if (!(await ckpt.files.exists(name))) continue;
      await copyFile(join(dir, name), join(flags.out, name));
      copied.push(name);
    }
    const seconds = (performance.now() - started) / 1000;
    const summary = {
      out: flags.out,
      model: join("onnx", base),
      external_data: external ? join("onnx", dataName) : null,
      dtype: flags.dtype,
      weight_bytes: weightBytes,
      cats_thresholds: thresholds,
      copied,
      seconds,
    };
    if (flags.json) process.stdout.write(JSON.stringify(summary) + "\n");
    else {
      const cats = thresholds ? `, CATS mask at sparsity ${flags.sparsity}` : "";
      const data = external ? ` + ${summary.external_data}` : "";
      process.stdout.write(`wrote ${join(flags.out, summary.model)}${data} (${flags.dtype}${cats}) in ${seconds.toFixed(1)} s\n`);
    }
  } finally {
    await ckpt.close();
  }
}
