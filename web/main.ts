import { levelWeightBytes } from "../src/sparsity-bench/report.js";
import type { PageResult } from "../src/sparsity-bench/page.js";
import { benchPrompt, runBench } from "../src/sparsity-bench/run.js";
import { thresholdsForLevel, type LayerThresholds } from "../src/cats/thresholds.js";
import { loadModel } from "../src/browser.js";
import { bundledKernels } from "./kernels.js";

const log = (text: string) => {
  document.querySelector("#log")!.textContent += text + "\n";
};

async function main(): Promise<void> {
  const q = new URLSearchParams(location.search);
  const modelUrl = q.get("model") ?? "/models/stories260K";
  const levelsWanted = (q.get("sparsity") ?? "0").split(",").map(Number);
  const tokens = Number(q.get("tokens") ?? 64);
  const runs = Number(q.get("runs") ?? 3);
  // The library's browser entry loads the model; the benchmark loop then drives its engine directly.
  const model = await loadModel(modelUrl, {
    kernels: bundledKernels,
    // Kernel variants measured on this adapter once, then read from localStorage (?tune=off: defaults).
    tune: q.get("tune") !== "off",
    notice: log,
    thresholds: q.get("thresholds") ?? undefined,
  });
  const { engine, gpu, tokenizer, config } = model;
  log(`adapter: ${gpu.adapter.vendor} ${gpu.adapter.architecture} (${gpu.flavour} kernels)`);
  const levels: LayerThresholds[] = [];
  for (const k of levelsWanted) {
    if (k === 0) levels.push({ level: 0, thresholds: new Array(config.numLayers).fill(0), source: "dense" });
    else if (!model.thresholdsFile) throw new Error(`sparsity ${k} needs a thresholds file`);
    else levels.push(thresholdsForLevel(model.thresholdsFile, k, q.get("thresholds")!));
  }
  const prompt = q.get("prompt");
  const promptIds =
    prompt !== null
      ? tokenizer.encode(prompt)
      : benchPrompt((t, b) => tokenizer.encode(t, b), config.bosTokenId, Number(q.get("promptTokens") ?? 32));
  log(`model ${modelUrl}: ${promptIds.length}-token prompt, ${tokens} tokens x ${runs} runs at ${levelsWanted.join(", ")}`);
  await window.catsPhase?.("start");
  const samples = await runBench(engine, {
    promptIds,
    tokens,
    runs,
    levels,
    meter: null,
    onRun: (i, run) => log(`level ${levels[i].level} run ${run + 1}`),
  });
  await window.catsPhase?.("end");
  const a = gpu.adapter;
  const result: PageResult = {
    samples,
    weightBytes: levelWeightBytes(samples, (f) => engine.weightBytesPerToken(f)),
    adapter: [a.vendor, a.architecture, a.description].filter((s) => s).join(" "),
    kernels: gpu.flavour,
    modelName: model.name,
    synthetic: config.synthetic,
    promptTokens: promptIds.length,
    userAgent: navigator.userAgent,
  };
  window.catsResult = result;
  log("done");
}

main().catch((e: unknown) => {
  window.catsError = e instanceof Error ? e.message : String(e);
  log(`error: ${window.catsError}`);
});
