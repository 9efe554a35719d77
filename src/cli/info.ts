import { createGpu } from "../gpu/device.js";

export async function runInfo(flags: { json?: boolean; kernels?: string }): Promise<void> {
  const gpu = await createGpu({ flavour: flags.kernels });
  const info = { adapter: gpu.adapter, kernels: gpu.flavour, features: gpu.adapterFeatures, limits: gpu.adapterLimits };
  if (flags.json) {
    process.stdout.write(JSON.stringify(info, null, 1) + "\n");
  } else {
    const a = gpu.adapter;
    const lines = [
      `adapter   ${[a.vendor, a.architecture, a.device, a.description].filter((s) => s).join(" / ") || "(no description)"}${a.isFallback ? " (fallback)" : ""}`,
      `kernels   ${gpu.flavour} variants`,
      `features  ${gpu.adapterFeatures.join(", ")}`,
      "limits",
      ...Object.entries(gpu.adapterLimits).map(([k, v]) => `  ${k.padEnd(44)} ${v}`),
    ];
    process.stdout.write(lines.join("\n") + "\n");
  }
  gpu.destroy();
}
