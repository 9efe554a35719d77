import { levelWeightBytes } from "../src/sparsity-bench/report.js";
import type { PageResult } from "../src/sparsity-bench/page.js";
import { benchPrompt, runBench } from "../src/sparsity-bench/run.js";
import { checkThresholdsFile, thresholdsForLevel, type LayerThresholds } from "../src/cats/thresholds.js";
import { LlamaEngine } from "../src/engine/llama.js";
import { createGpu } from "../src/gpu/device.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { TextTokenizer } from "../src/tokenizer/tokenizer.js";
import { LocalStorageTuneStore } from "../src/gpu/tune-storage.js";
import { bundledKernels } from "./kernels.js";
import { urlFiles } from "./files.js";

const log = (text: string) => {
  document.querySelector("#log")!.textContent += text + "\n";
};

async function main(): Promise<void> {
  const q = new URLSearchParams(location.search);
  const model = q.get("model") ?? "/models/stories260K";
  const levelsWanted = (q.get("sparsity") ?? "0").split(",").map(Number);
  const tokens = Number(q.get("tokens") ?? 64);
  const runs = Number(q.get("runs") ?? 3);
  const gpu = await createGpu();
  log(`adapter: ${gpu.adapter.vendor} ${gpu.adapter.architecture} (${gpu.flavour} kernels)`);
  const files = urlFiles(model);
  const ckpt = await openCheckpoint(files);
  const tokenizer = await TextTokenizer.load(files, ckpt.config);
  // Kernel variants measured on this adapter once, then read from localStorage (?tune=off: defaults).
  let told = false;
  const tune =
    q.get("tune") === "off"
      ? null
      : {
          store: new LocalStorageTuneStore(localStorage, "cats-autotune", log),
          onCase: () => {
            if (!told) log("measuring kernel variants for this adapter (once; kept in localStorage)");
            told = true;
          },
        };
  const engine = await LlamaEngine.load(gpu, ckpt, { kernels: bundledKernels, tune });
  const levels: LayerThresholds[] = [];
  const thresholdsUrl = q.get("thresholds");
  const file = thresholdsUrl ? await checkThresholdsFile(await (await fetch(thresholdsUrl)).json(), thresholdsUrl, ckpt) : null;
  for (const k of levelsWanted) {
    if (k === 0) levels.push({ level: 0, thresholds: new Array(ckpt.config.numLayers).fill(0), source: "dense" });
    else if (!file) throw new Error(`sparsity ${k} needs a thresholds file`);
    else levels.push(thresholdsForLevel(file, k, thresholdsUrl!));
  }
  const prompt = q.get("prompt");
  const promptIds =
    prompt !== null
      ? tokenizer.encode(prompt)
      : benchPrompt((t, b) => tokenizer.encode(t, b), ckpt.config.bosTokenId, Number(q.get("promptTokens") ?? 32));
  log(`model ${model}: ${promptIds.length}-token prompt, ${tokens} tokens x ${runs} runs at ${levelsWanted.join(", ")}`);
  await window.catsPhase?.("start");
  const samples = await runBench(engine, {
    promptIds,
    tokens,
    runs,
    levels,
    meter: null,
    onRun: (level, run) => log(`level ${level} run ${run + 1}`),
  });
  await window.catsPhase?.("end");
  const a = gpu.adapter;
  const result: PageResult = {
    samples,
    weightBytes: levelWeightBytes(samples, (f) => engine.weightBytesPerToken(f)),
    adapter: [a.vendor, a.architecture, a.description].filter((s) => s).join(" "),
    kernels: gpu.flavour,
    modelName:
      model
        .split("/")
        .filter((s) => s)
        .pop() ?? model,
    synthetic: ckpt.config.synthetic,
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
