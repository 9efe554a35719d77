import { Usage } from "./flags.js";
import type { GpuContext } from "./device.js";
import { composeKernel, type KernelSource } from "./kernelsource.js";

/** Compiles each composed kernel once per device and hands out bind groups for it. */
export class PipelineCache {
  private readonly pipelines = new Map<string, GPUComputePipeline>();

  constructor(
    private readonly gpu: GpuContext,
    private readonly source: KernelSource,
  ) {}

  get(parts: string[], constants?: Record<string, number>, entryPoint = "main"): GPUComputePipeline {
    const key = parts.join("+") + JSON.stringify(constants ?? {}) + entryPoint;
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      const device = this.gpu.device;
      const module = device.createShaderModule({ label: key, code: composeKernel(this.source, parts) });
      pipeline = device.createComputePipeline({ label: key, layout: "auto", compute: { module, entryPoint, constants } });
      this.pipelines.set(key, pipeline);
    }
    return pipeline;
  }

  bind(pipeline: GPUComputePipeline, buffers: (GPUBuffer | undefined)[], label?: string): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = [];
    buffers.forEach((buffer, binding) => {
      if (buffer) entries.push({ binding, resource: { buffer } });
    });
    return this.gpu.device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries });
  }

  /** A small uniform buffer of u32 words; indices listed in `floats` are written as f32. */
  uniform(words: number[], floats: number[] = [], label?: string): GPUBuffer {
    const size = Math.ceil((words.length * 4) / 16) * 16;
    const buffer = this.gpu.device.createBuffer({ label, size, usage: Usage.UNIFORM | Usage.COPY_DST, mappedAtCreation: true });
    const range = buffer.getMappedRange();
    const u = new Uint32Array(range);
    const f = new Float32Array(range);
    words.forEach((w, i) => {
      if (floats.includes(i)) f[i] = w;
      else u[i] = w;
    });
    buffer.unmap();
    return buffer;
  }
}

/** One compute dispatch of a forward pass; its grid depends on how many tokens the pass holds. */
export interface Dispatch {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  grid: (ntok: number) => [number, number, number];
  /** A variant for passes of a single token (decode), where token tiles would waste work. */
  one?: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup };
}

/**
 * A dispatch of a tiled kernel with its single-token entry point `main_one` beside it; each needs
 * its own bind group because "auto" layouts are distinct per pipeline.
 */
export function withSingleToken(
  pipes: PipelineCache,
  parts: string[],
  buffers: (GPUBuffer | undefined)[],
  grid: Dispatch["grid"],
): Dispatch {
  const pipeline = pipes.get(parts);
  const one = pipes.get(parts, undefined, "main_one");
  return { pipeline, bindGroup: pipes.bind(pipeline, buffers), grid, one: { pipeline: one, bindGroup: pipes.bind(one, buffers) } };
}

/**
 * Grid for kernels with one invocation (cpu flavour, workgroups of 64) or one workgroup (gpu
 * flavour) per row, with token tiles of 4 in y. Rows past the per-dimension limit spill into z.
 */
export function rowGrid(cpu: boolean, maxDim: number, rows: number, fixedNtok?: number): (ntok: number) => [number, number, number] {
  return (ntok) => {
    const tiles = Math.ceil((fixedNtok ?? ntok) / 4);
    if (cpu) return [Math.ceil(rows / 64), tiles, 1];
    return [Math.min(rows, maxDim), tiles, Math.ceil(rows / maxDim)];
  };
}

export function encodeDispatches(pass: GPUComputePassEncoder, dispatches: Dispatch[], ntok: number): void {
  for (const d of dispatches) {
    const [x, y, z] = d.grid(ntok);
    if (x === 0 || y === 0 || z === 0) continue;
    const v = ntok === 1 && d.one ? d.one : d;
    pass.setPipeline(v.pipeline);
    pass.setBindGroup(0, v.bindGroup);
    pass.dispatchWorkgroups(x, y, z);
  }
}
