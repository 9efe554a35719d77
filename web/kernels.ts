import type { KernelSource } from "../src/gpu/kernelsource.js";

// Vite inlines every kernels/*.wgsl as text, so the page runs exactly the WGSL that Node runs.
const files = import.meta.glob("../kernels/*.wgsl", { query: "?raw", import: "default", eager: true }) as Record<string, string>;

export const bundledKernels: KernelSource = (name) => {
  const text = files[`../kernels/${name}.wgsl`];
  if (text === undefined) throw new Error(`kernel ${name}.wgsl is not bundled`);
  return text;
};
