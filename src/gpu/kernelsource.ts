/** Returns the WGSL text of `kernels/<name>.wgsl`; Node reads the file, a browser build bundles them. */
export type KernelSource = (name: string) => string;
