// Exit 0 when Dawn finds a WebGPU adapter, 1 otherwise. Used by setup to decide whether a Vulkan driver is needed.
try {
  const { create, globals } = await import("webgpu");
  Object.assign(globalThis, globals);
  const gpu = create([]);
  globalThis.__catsProbeKeepAlive = gpu;
  const adapter = await gpu.requestAdapter();
  if (!adapter) process.exit(1);
  const info = adapter.info;
  console.log(`webgpu adapter: ${[info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" / ")}`);
  process.exit(0);
} catch (e) {
  console.log(`webgpu probe failed: ${e.message}`);
  process.exit(1);
}
