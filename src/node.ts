import { createGpu, type GpuContext } from "./gpu/device.js";
import { nodeKernelSource } from "./gpu/nodekernels.js";
import { LlamaEngine } from "./engine/llama.js";
import { openCheckpoint, type Checkpoint } from "./model/checkpoint.js";
import { directoryFiles } from "./model/nodefiles.js";
import { resolveModelDir } from "./model/resolve.js";
import { TextTokenizer } from "./tokenizer/tokenizer.js";
import { parseOverrides } from "./gpu/variants.js";

export interface LoadedModel {
  dir: string;
  gpu: GpuContext;
  checkpoint: Checkpoint;
  engine: LlamaEngine;
  tokenizer: TextTokenizer;
  loadMs: number;
  close(): Promise<void>;
}

export interface LoadOptions {
  capture?: boolean;
  flavour?: string;
  chunk?: number;
  gpu?: GpuContext;
  /** Variant overrides per op, "op=variant,..." (the --variant flags; CATS_VARIANTS otherwise). */
  variants?: string;
  maxBindingBytes?: number;
}

/** Resolves `model` (a directory or a name), opens it, uploads it to a Dawn device. */
export async function loadModel(model: string | undefined, options: LoadOptions = {}): Promise<LoadedModel> {
  const t0 = performance.now();
  const dir = resolveModelDir(model);
  const files = directoryFiles(dir);
  const checkpoint = await openCheckpoint(files);
  try {
    const tokenizer = await TextTokenizer.load(files, checkpoint.config);
    const gpu = options.gpu ?? (await createGpu({ flavour: options.flavour }));
    const engine = await LlamaEngine.load(gpu, checkpoint, {
      kernels: nodeKernelSource,
      chunk: options.chunk,
      capture: options.capture,
      variants: parseOverrides(options.variants ?? process.env.CATS_VARIANTS),
      maxBindingBytes: options.maxBindingBytes,
    });
    return {
      dir,
      gpu,
      checkpoint,
      engine,
      tokenizer,
      loadMs: performance.now() - t0,
      async close() {
        await checkpoint.close();
      },
    };
  } catch (e) {
    await checkpoint.close();
    throw e;
  }
}
