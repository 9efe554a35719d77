/** Returns the WGSL text of `kernels/<name>.wgsl`; Node reads the file, a browser build bundles them. */
export type KernelSource = (name: string) => string;

/**
 * Joins kernel files into one module. Weight access is a separate file (weights_f32 / weights_f16)
 * so every matrix kernel is written once and gets the storage format it needs.
 */
export function composeKernel(source: KernelSource, parts: string[]): string {
  return parts.map((p) => source(p)).join("\n");
}
