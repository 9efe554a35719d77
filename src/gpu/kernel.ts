import { CatsError } from "../errors.js";
import type { GpuContext } from "./device.js";
import { Usage } from "./flags.js";
import type { KernelSource } from "./kernelsource.js";
import { composeKernel, parseInterface, type KernelInterface, type KernelSpec, type ParamType } from "./wgsl.js";

export type ParamValues = Record<string, number>;

/** What a dispatch binds: `params` fills the uniform struct by field name, every other key a binding by name. */
/** A buffer bound from `offset` on (a tile of token rows). */
export interface BufferAt {
  buffer: GPUBuffer;
  offset: number;
}

export type KernelArgs = { params?: ParamValues } & Record<string, GPUBuffer | BufferAt | ParamValues | undefined>;

const STAGE_COMPUTE = 0x4;

const SHADER_STAGE_LAYOUT: Record<string, GPUBufferBindingType> = {
  uniform: "uniform",
  "read-only-storage": "read-only-storage",
  storage: "storage",
};

export function specKey(spec: KernelSpec): string {
  return JSON.stringify([spec.file, spec.entry ?? "main", spec.weights ?? {}, spec.consts ?? {}]);
}

/** Writes params into a uniform's bytes by field name, checking every field is given with a value its type can hold. */
function packParams(
  kernel: string,
  iface: KernelInterface,
  values: ParamValues,
  partial: boolean,
): { data: ArrayBuffer; fields: number[] } {
  const fields = iface.params!.fields;
  const data = new ArrayBuffer(Math.max(16, Math.ceil((fields.length * 4) / 16) * 16));
  const view = new DataView(data);
  const written: number[] = [];
  for (const name of Object.keys(values)) {
    if (!fields.some((f) => f.name === name)) {
      throw new CatsError(`kernel ${kernel}: params have no field "${name}" (fields: ${fields.map((f) => f.name).join(", ")})`);
    }
  }
  fields.forEach((f, i) => {
    const v = values[f.name];
    if (v === undefined) {
      if (partial) return;
      throw new CatsError(`kernel ${kernel}: param "${f.name}" (${f.type}) is not given`);
    }
    checkParam(kernel, f.name, f.type, v);
    if (f.type === "u32") view.setUint32(i * 4, v, true);
    else if (f.type === "i32") view.setInt32(i * 4, v, true);
    else view.setFloat32(i * 4, v, true);
    written.push(i);
  });
  return { data, fields: written };
}

function checkParam(kernel: string, name: string, type: ParamType, v: unknown): void {
  const ok =
    typeof v === "number" &&
    (type === "f32"
      ? Number.isFinite(v)
      : Number.isInteger(v) && (type === "u32" ? v >= 0 && v <= 0xffffffff : v >= -(2 ** 31) && v < 2 ** 31));
  if (!ok) throw new CatsError(`kernel ${kernel}: param "${name}": expected ${type}, got ${String(v)}`);
}

/**
 * A kernel bound to its buffers and params: a bind group and a uniform buffer made once (at load),
 * dispatched as often as needed. `setParams` rewrites fields between submissions.
 */
export class BoundKernel {
  constructor(
    readonly kernel: Kernel,
    readonly bindGroup: GPUBindGroup,
    private readonly uniform: GPUBuffer | null,
    private readonly device: GPUDevice,
  ) {}

  encode(pass: GPUComputePassEncoder, grid: readonly [number, number, number]): void {
    pass.setPipeline(this.kernel.pipeline);
    pass.setBindGroup(0, this.bindGroup);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
  }

  /** Rewrites the named params; the others keep their values. Takes effect for work submitted afterwards. */
  setParams(values: ParamValues): void {
    if (!this.uniform) throw new CatsError(`kernel ${this.kernel.name}: has no params`);
    const { data, fields } = packParams(this.kernel.name, this.kernel.iface, values, true);
    for (const i of fields) this.device.queue.writeBuffer(this.uniform, i * 4, data, i * 4, 4);
  }
}

/** A compiled kernel with its interface read from the WGSL, so dispatches bind buffers and params by name. */
export class Kernel {
  readonly pipeline: GPUComputePipeline;
  readonly iface: KernelInterface;
  private readonly layout: GPUBindGroupLayout;

  constructor(
    private readonly gpu: GpuContext,
    readonly name: string,
    readonly code: string,
    entry: string,
  ) {
    this.iface = parseInterface(code, name);
    const device = gpu.device;
    this.layout = device.createBindGroupLayout({
      label: name,
      entries: this.iface.bindings.map((b) => ({
        binding: b.binding,
        visibility: STAGE_COMPUTE,
        buffer: { type: SHADER_STAGE_LAYOUT[b.kind] },
      })),
    });
    const module = device.createShaderModule({ label: name, code });
    this.pipeline = device.createComputePipeline({
      label: name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [this.layout] }),
      compute: { module, entryPoint: entry },
    });
  }

  /** Binds every declared binding by name; a missing, unknown or mistyped name fails here, at load. */
  bind(args: KernelArgs, label?: string): BoundKernel {
    const device = this.gpu.device;
    const where = label ? `${this.name} (${label})` : this.name;
    const names = this.iface.bindings.filter((b) => !b.params).map((b) => b.name);
    for (const key of Object.keys(args)) {
      if (key !== "params" && !names.includes(key)) {
        throw new CatsError(`kernel ${where}: has no binding "${key}" (bindings: ${names.join(", ")})`);
      }
    }
    let uniform: GPUBuffer | null = null;
    const entries: GPUBindGroupEntry[] = [];
    for (const b of this.iface.bindings) {
      if (b.params) {
        if (!args.params) throw new CatsError(`kernel ${where}: params are not given`);
        const { data } = packParams(where, this.iface, args.params, false);
        uniform = device.createBuffer({ label: `${where} params`, size: data.byteLength, usage: Usage.UNIFORM | Usage.COPY_DST });
        device.queue.writeBuffer(uniform, 0, data);
        entries.push({ binding: b.binding, resource: { buffer: uniform } });
        continue;
      }
      const arg = args[b.name];
      const at = arg && "buffer" in arg ? (arg as BufferAt) : arg && "size" in arg ? { buffer: arg as GPUBuffer, offset: 0 } : null;
      if (!at) throw new CatsError(`kernel ${where}: binding "${b.name}" is not given`);
      // A uniform array is bound from its offset up to the adapter's uniform binding limit.
      const rest = at.buffer.size - at.offset;
      const size = b.kind === "uniform" ? Math.min(rest, device.limits.maxUniformBufferBindingSize) : rest;
      entries.push({ binding: b.binding, resource: { buffer: at.buffer, offset: at.offset, size } });
    }
    if (args.params && !uniform) throw new CatsError(`kernel ${where}: has no params`);
    return new BoundKernel(this, device.createBindGroup({ label: where, layout: this.layout, entries }), uniform, device);
  }
}

/** Compiles each kernel spec once per device. */
export class KernelCache {
  private readonly kernels = new Map<string, Kernel>();

  constructor(
    readonly gpu: GpuContext,
    readonly source: KernelSource,
  ) {}

  get(spec: KernelSpec): Kernel {
    const key = specKey(spec);
    let kernel = this.kernels.get(key);
    if (!kernel) {
      const name = spec.entry && spec.entry !== "main" ? `${spec.file}.${spec.entry}` : spec.file;
      kernel = new Kernel(this.gpu, name, composeKernel(this.source, spec), spec.entry ?? "main");
      this.kernels.set(key, kernel);
    }
    return kernel;
  }
}
