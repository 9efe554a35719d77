import { CatsError } from "../errors.js";

/**
 * Which kernel variants suit the adapter. CPU Vulkan drivers (lavapipe, SwiftShader) pay a lot
 * for workgroup barriers and like one invocation per output row; real GPUs want workgroups that
 * cooperate on a row.
 */
export type KernelFlavour = "cpu" | "gpu";

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallback: boolean;
}

export interface GpuContext {
  readonly device: GPUDevice;
  readonly adapter: AdapterDescription;
  readonly adapterFeatures: string[];
  readonly adapterLimits: Record<string, number>;
  readonly flavour: KernelFlavour;
  /** Optional features the device was created with (those of "subgroups", "shader-f16", "timestamp-query" the adapter has). */
  readonly features: ReadonlySet<string>;
  /** Subgroup sizes the adapter may use (1..1 when it has no subgroups). */
  readonly subgroupSizes: { min: number; max: number };
  /**
   * True where waiting on the GPU keeps a CPU core polling (dawn.node), so long waits should sleep
   * first; false in browsers.
   */
  readonly pollsWhileWaiting: boolean;
  /** The driver worker threads this device was opened with (DeviceOptions.driverThreads); null: the driver's default. */
  readonly driverThreads: number | null;
  /** Throws a CatsError if the device was lost or reported a validation/OOM error since the last check. */
  check(what: string): void;
  destroy(): void;
}

/** Objects from dawn.node's create(): when V8 collects one, Dawn crashes in ProcessEvents, so they live forever. */
const keepAlive: unknown[] = [];

const LIMITS_WANTED = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
] as const;

const CPU_ADAPTER = /llvmpipe|lavapipe|swiftshader|software|cpu/i;

export function pickFlavour(adapter: AdapterDescription, override?: string): KernelFlavour {
  if (override === "cpu" || override === "gpu") return override;
  const text = `${adapter.vendor} ${adapter.architecture} ${adapter.device} ${adapter.description}`;
  return adapter.isFallback || CPU_ADAPTER.test(text) ? "cpu" : "gpu";
}

function describe(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info;
  const legacy = adapter as unknown as { isFallbackAdapter?: boolean };
  return {
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    device: info?.device ?? "",
    description: info?.description ?? "",
    isFallback: Boolean((info as unknown as { isFallbackAdapter?: boolean })?.isFallbackAdapter ?? legacy.isFallbackAdapter),
  };
}

async function nodeGpu(): Promise<GPU> {
  let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  try {
    // Named through a variable so browser bundlers leave dawn.node out.
    const pkg = "webgpu";
    mod = (await import(/* @vite-ignore */ pkg)) as unknown as typeof mod;
  } catch (e) {
    throw new CatsError(`cannot load the "webgpu" package (Dawn for Node): ${(e as Error).message}; run npm ci`);
  }
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create([]);
  keepAlive.push(gpu);
  return gpu;
}

export interface DeviceOptions {
  /** Force kernel variants instead of picking by adapter ("cpu" or "gpu"). */
  flavour?: string;
  /**
   * Worker threads of a CPU Vulkan driver for this device (Mesa llvmpipe reads LP_NUM_THREADS when
   * Dawn opens it; other drivers ignore it). 0 runs every dispatch on the submitting thread: no
   * hand-off to workers, which costs more than the work itself for small models.
   */
  driverThreads?: number;
}

/** Sets an environment variable while `f` runs (the driver reads it as Dawn opens it), then restores it. */
async function withEnv<T>(name: string, value: string | undefined, f: () => Promise<T>): Promise<T> {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  if (!env || value === undefined) return f();
  const old = env[name];
  env[name] = value;
  try {
    return await f();
  } finally {
    if (old === undefined) delete env[name];
    else env[name] = old;
  }
}

/** A WebGPU device from navigator.gpu in a browser, from dawn.node in Node. */
export async function createGpu(options: DeviceOptions = {}): Promise<GpuContext> {
  const threads = options.driverThreads === undefined ? undefined : String(options.driverThreads);
  return withEnv("LP_NUM_THREADS", threads, () => openGpu(options));
}

async function openGpu(options: DeviceOptions): Promise<GpuContext> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const gpu = nav?.gpu ?? (await nodeGpu());
  const pollsWhileWaiting = nav?.gpu === undefined;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new CatsError(
      "no WebGPU adapter: install a Vulkan driver (scripts/setup.sh installs Mesa lavapipe) or enable WebGPU in the browser",
    );
  }
  keepAlive.push(adapter);
  const requiredLimits: Record<string, number> = {};
  const adapterLimits: Record<string, number> = {};
  for (const name of LIMITS_WANTED) {
    requiredLimits[name] = adapter.limits[name];
  }
  for (const key in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof v === "number") adapterLimits[key] = v;
  }
  const adapterFeatures = [...adapter.features].map(String).sort();
  const requiredFeatures = (["timestamp-query", "subgroups", "shader-f16"] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  keepAlive.push(device);
  let lostReason: string | null = null;
  let firstError: string | null = null;
  let destroyed = false;
  device.lost.then((info) => {
    if (!destroyed) lostReason = `${info.reason}: ${info.message}`;
  });
  device.addEventListener("uncapturederror", (ev) => {
    const err = (ev as GPUUncapturedErrorEvent).error;
    firstError ??= err.message;
  });
  const desc = describe(adapter);
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  const subgroups = requiredFeatures.includes("subgroups" as GPUFeatureName);
  return {
    device,
    adapter: desc,
    adapterFeatures,
    adapterLimits,
    flavour: pickFlavour(desc, options.flavour ?? readEnvFlavour()),
    features: new Set<string>(requiredFeatures),
    pollsWhileWaiting,
    driverThreads: options.driverThreads ?? userDriverThreads(),
    subgroupSizes: subgroups ? { min: info.subgroupMinSize ?? 4, max: info.subgroupMaxSize ?? 128 } : { min: 1, max: 1 },
    check(what) {
      if (lostReason !== null) throw new CatsError(`GPU device lost during ${what} (${lostReason})`);
      if (firstError !== null) throw new CatsError(`GPU error during ${what}: ${firstError}`);
    },
    destroy() {
      destroyed = true;
      device.destroy();
    },
  };
}

/** LP_NUM_THREADS as the user set it: the driver reads it, so tuning must key on it. */
function userDriverThreads(): number | null {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.LP_NUM_THREADS;
  return v === undefined || v.trim() === "" || !Number.isInteger(Number(v)) ? null : Number(v);
}

function readEnvFlavour(): string | undefined {
  const value = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CATS_KERNELS;
  if (value !== undefined && value !== "" && value !== "cpu" && value !== "gpu") {
    throw new CatsError(`CATS_KERNELS: expected "cpu" or "gpu", got "${value}"`);
  }
  return value || undefined;
}
