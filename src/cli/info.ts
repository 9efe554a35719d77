import { tuneKey } from "../gpu/autotune.js";
import { createGpu, type GpuContext } from "../gpu/device.js";
import { KernelCache } from "../gpu/kernel.js";
import { nodeKernelSource } from "../gpu/nodekernels.js";
import { readCeiling } from "../gpu/roofline.js";
import { TuneFileStore } from "../gpu/tune-file.js";
import { parseOverrides, VariantTable } from "../gpu/variants.js";
import { checkpointBytes, rowBlocksFrom, STREAMED_MODEL_FROM } from "../engine/llama.js";
import { downSlicesFrom } from "../engine/load.js";
import { tunedKernelsHash } from "../engine/llama.js";
import { checkWeightsFinite } from "../model/check-weights.js";
import { openCheckpoint } from "../model/checkpoint.js";
import { describeWeightFormat } from "../model/weight-format.js";
import { directoryFiles } from "../model/nodefiles.js";
import { resolveModelDir } from "../model/resolve.js";
import { TextTokenizer } from "../tokenizer/tokenizer.js";

export interface InfoFlags {
  json?: boolean;
  kernels?: string;
  variant?: string;
  /** Measure the read ceiling again even if it is cached. */
  measure?: boolean;
  /** A model to check (config, tensors, tokenizer, every weight finite) and describe. */
  model?: string;
}

/** Opens a model without a GPU, validates everything a load would, and scans the weights for NaN and infinity. */
async function checkModel(model: string): Promise<Record<string, unknown>> {
  const dir = resolveModelDir(model);
  const files = directoryFiles(dir);
  const ckpt = await openCheckpoint(files);
  try {
    await TextTokenizer.load(files, ckpt.config);
    const tensors = await checkWeightsFinite(ckpt);
    const c = ckpt.config;
    const bytes = checkpointBytes(ckpt);
    const dtypes = [...new Set([...ckpt.tensors.values()].map((t) => t.dtype))].sort();
    return {
      dir,
      architecture: c.architecture,
      layers: c.numLayers,
      hidden_size: c.hiddenSize,
      intermediate_size: c.intermediateSize,
      heads: `${c.numHeads}/${c.numKvHeads}`,
      vocab_size: c.vocabSize,
      max_position_embeddings: c.maxPositions,
      dtypes,
      weights: describeWeightFormat(ckpt),
      weight_bytes: bytes,
      tensors,
      weights_finite: true,
      synthetic: c.synthetic,
    };
  } finally {
    await ckpt.close();
  }
}

/** The read ceiling measured on this adapter and driver, if `cats info` or `bench:kernels` cached one. */
export function cachedReadCeiling(gpu: GpuContext): number | undefined {
  return new TuneFileStore().load(tuneKey(gpu, tunedKernelsHash(nodeKernelSource)))?.readCeilingGBs;
}

/**
 * The adapter, the kernel variant each op runs on it (default, measured per matrix shape, or
 * overridden), the measured read ceiling (cached with the tuning), features and limits.
 */
export async function runInfo(flags: InfoFlags): Promise<void> {
  const model = flags.model === undefined ? null : await checkModel(flags.model);
  const gpu = await createGpu({ flavour: flags.kernels });
  const store = new TuneFileStore(undefined, (m) => process.stderr.write(`cats: ${m}\n`));
  const key = tuneKey(gpu, tunedKernelsHash(nodeKernelSource));
  const record = store.load(key) ?? { choices: {} };
  let ceiling = record.readCeilingGBs;
  if (ceiling === undefined || flags.measure) {
    const measured = await readCeiling(gpu, new KernelCache(gpu, nodeKernelSource));
    measured.destroy();
    ceiling = measured.gbPerS;
    await store.save(key, { ...record, readCeilingGBs: ceiling });
  }
  const variants = new VariantTable(gpu, parseOverrides(flags.variant ?? process.env.CATS_VARIANTS), record.choices).describe();
  // With a model, the layout it would load with (a model that streams from memory puts all in blocks).
  const blocksFrom = rowBlocksFrom(gpu, undefined, model ? (model.weight_bytes as number) : 0);
  const size = (bytes: number) =>
    bytes >= 1 << 20 ? `${bytes / (1 << 20)} MiB` : bytes >= 1 << 10 ? `${bytes / (1 << 10)} KiB` : `${bytes} bytes`;
  const info = {
    ...(model ? { model } : {}),
    adapter: gpu.adapter,
    kernels: gpu.flavour,
    // Smallest float matrix read whole every token (q/k/v, o, gate, lm_head) stored in row blocks; null: none.
    row_blocks_from_bytes: Number.isFinite(blocksFrom) ? blocksFrom : null,
    // Smallest W_down^T stored in column slices; null: none.
    down_slices_from_bytes: Number.isFinite(blocksFrom) ? downSlicesFrom(blocksFrom) : null,
    driver_threads: gpu.driverThreads,
    read_ceiling_gb_per_s: ceiling,
    cache: store.path,
    variants,
    driver_threads_by_model: record.driverThreads ?? {},
    features: gpu.adapterFeatures,
    limits: gpu.adapterLimits,
  };
  if (flags.json) {
    process.stdout.write(JSON.stringify(info, null, 1) + "\n");
  } else {
    const a = gpu.adapter;
    const threads = Object.entries(record.driverThreads ?? {});
    const nameWidth = Math.max(...variants.map((v) => v.variant.length));
    const lines = [
      ...(model
        ? [
            `model         ${model.dir}: ${model.architecture}, ${model.layers} layers, hidden ${model.hidden_size}, intermediate ${model.intermediate_size}, heads ${model.heads}, vocab ${model.vocab_size}, ${model.weights as string}, ${((model.weight_bytes as number) / 1e6).toFixed(1)} MB${model.synthetic ? " (SYNTHETIC)" : ""}`,
            `weights       all ${model.tensors} tensors finite (no NaN or infinity); tokenizer and config consistent`,
          ]
        : []),
      `adapter       ${[a.vendor, a.architecture, a.device, a.description].filter((s) => s).join(" / ") || "(no description)"}${a.isFallback ? " (fallback)" : ""}`,
      `kernels       ${gpu.flavour} variants`,
      `layout        ${
        blocksFrom === 0
          ? `q/k/v, o, gate and lm_head in row blocks (f32b/f16b, q{bits}bg{G}), W_down^T in column slices (f32s/f16s, q{bits}sg{G}), W_up row after row`
          : Number.isFinite(blocksFrom)
            ? `q/k/v, o, gate and lm_head of ${size(blocksFrom)} or more in row blocks (f32b/f16b, q{bits}bg{G}), W_down^T of ${size(downSlicesFrom(blocksFrom))} or more in column slices (f32s/f16s, q{bits}sg{G}), the rest row after row; all of them in a model of ${size(STREAMED_MODEL_FROM)} or more`
            : "every matrix row after row"
      } (CATS_ROW_BLOCKS=1 all, 0 none)`,
      `read ceiling  ${ceiling.toFixed(2)} GB/s (streaming read, measured on this adapter; cached in ${store.path})`,
      "variants      op, matrix shape: variant (default, autotune = measured on first use, override)",
      ...variants.map((v) => `  ${(v.op + (v.shape ? ` ${v.shape}` : "")).padEnd(36)} ${v.variant.padEnd(nameWidth)} ${v.source}`),
      ...(threads.length > 0
        ? ["driver worker threads per model (measured; null = the driver's default)", ...threads.map(([m, t]) => `  ${m.padEnd(60)} ${t}`)]
        : []),
      `features      ${gpu.adapterFeatures.join(", ")}`,
      "limits",
      ...Object.entries(gpu.adapterLimits).map(([k, v]) => `  ${k.padEnd(44)} ${v}`),
    ];
    process.stdout.write(lines.join("\n") + "\n");
  }
  gpu.destroy();
}
