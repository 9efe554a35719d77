import type { KernelSource } from "./kernelsource.js";

/** Every file of kernels/ (a test checks this list against the directory). */
export const KERNEL_FILES = [
  "argmax",
  "attend",
  "attention",
  "attention_decode",
  "attention_decode_io",
  "attention_serial",
  "common",
  "down",
  "down1",
  "embed",
  "gate_up",
  "group_rows",
  "input",
  "lanes",
  "last_row",
  "layer",
  "matmul",
  "nll",
  "norm",
  "o_mlp",
  "o_mlp_tail",
  "project",
  "project1",
  "qkv_attention",
  "qrows",
  "qtlayout",
  "rope_kv",
  "rowblock",
  "sliceblock",
  "stream_read",
  "weights8_f16",
  "weights8_f32",
  "weights8u_f16",
  "weights8u_f32",
  "weights8_q",
  "weights8_qt",
  "weights_f16",
  "weights_f32",
  "weights_q",
  "weights_qt",
] as const;

/**
 * Fetches every kernel once from `base` (a URL ending in kernels/) and serves them from memory:
 * kernel composition is synchronous, so the WGSL must be at hand before the engine loads.
 */
export async function fetchKernels(base: string | URL): Promise<KernelSource> {
  const texts = new Map<string, string>();
  await Promise.all(
    KERNEL_FILES.map(async (name) => {
      const url = new URL(`${name}.wgsl`, base);
      const res = await fetch(url);
      if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
      texts.set(name, await res.text());
    }),
  );
  return (name) => {
    const text = texts.get(name);
    if (text === undefined) throw new Error(`kernel ${name}.wgsl is not in KERNEL_FILES`);
    return text;
  };
}
