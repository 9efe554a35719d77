/**
 * `npm run bench:chrome`: the same dense-vs-sparse benchmark in headless Chromium. Serves the page
 * (web/) and the model with Vite on localhost, drives Debian's chromium through playwright-core with
 * WebGPU on (SwiftShader when there is no GPU), measures host energy around the page's benchmark
 * loop, and writes the same bench.json / bench.md / bench.svg as `cats bench`.
 *   node dist/bench/chrome.js [--model DIR|NAME] [--thresholds FILE] [--sparsity 0,0.5] [--tokens N] [--runs R]
 *                             [--prompt TEXT] [--out DIR] [--json] [--chromium PATH] [--timeout S]
 */
import { createReadStream, existsSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join, resolve } from "node:path";
import { Command } from "commander";
import { chromium } from "playwright-core";
import { createServer, type ViteDevServer } from "vite";
import { buildReport, markdownTable } from "../src/sparsity-bench/report.js";
import { writeReport } from "../src/sparsity-bench/write.js";
import { prepareOutputDir } from "../src/files.js";
import { positiveInt } from "../src/cli/args.js";
import { sparsityLevels } from "../src/cli/args.js";
import type { EnergyMark, EnergyMeasurement } from "../src/energy/meter.js";
import { chooseMeter } from "../src/energy/select.js";
import { projectRoot, resolveModelDir } from "../src/model/resolve.js";
import type { PageResult } from "../src/sparsity-bench/page.js";

const opts = new Command("bench-chrome")
  .option("--model <dir>", "model directory or name", "stories260K")
  .option("--thresholds <file>", "CATS thresholds (needed for levels above 0)")
  .option("--sparsity <list>", "levels (0 = dense, always included)", sparsityLevels, [0])
  .option("--tokens <n>", "greedy tokens per run", positiveInt, 32)
  .option("--runs <r>", "runs per level", positiveInt, 3)
  .option("--prompt-tokens <n>", "prompt length when --prompt is not given", positiveInt, 32)
  .option("--prompt <text>", "prompt text (BOS added)")
  .option("--out <dir>", "where bench.json, bench.md and bench.svg go", "bench-out/chrome")
  .option("--json", "print the JSON report")
  .option("--no-tune", "run the default kernel variants instead of measuring them in the page's fresh profile")
  .option("--chromium <path>", "browser executable", "/usr/bin/chromium")
  .option("--timeout <s>", "seconds to wait for the page", positiveInt, 900)
  .parse()
  .opts<{
    model: string;
    thresholds?: string;
    sparsity: number[];
    tokens: number;
    runs: number;
    promptTokens: number;
    prompt?: string;
    out: string;
    json?: boolean;
    tune: boolean;
    chromium: string;
    timeout: number;
  }>();

if (opts.sparsity.some((l) => l > 0) && !opts.thresholds) {
  console.error("bench:chrome: levels above 0 need --thresholds FILE (from cats calibrate)");
  process.exit(1);
}
if (!existsSync(opts.chromium)) {
  console.error(`bench:chrome: no browser at ${opts.chromium} (scripts/setup.sh installs Debian's chromium)`);
  process.exit(1);
}

const modelDir = resolveModelDir(opts.model);
const thresholdsPath = opts.thresholds ? resolve(opts.thresholds) : null;

/** Serves /models/m/<file> from the model directory and /thresholds.json from the given file. */
function serveFile(path: string, res: ServerResponse): void {
  if (!existsSync(path) || !statSync(path).isFile()) {
    res.statusCode = 404;
    res.end();
    return;
  }
  res.setHeader("content-length", statSync(path).size);
  createReadStream(path).pipe(res);
}

const server: ViteDevServer = await createServer({
  configFile: false,
  root: join(projectRoot(), "web"),
  logLevel: "error",
  server: { host: "127.0.0.1", port: 0, strictPort: false, fs: { allow: [projectRoot()] }, hmr: false },
  plugins: [
    {
      name: "cats-files",
      configureServer(s) {
        s.middlewares.use((req: IncomingMessage, res: ServerResponse, next: () => void) => {
          const url = new URL(req.url ?? "/", "http://localhost");
          const m = /^\/models\/m\/([^/]+)$/.exec(url.pathname);
          if (m && !m[1].includes("..")) return serveFile(join(modelDir, m[1]), res);
          if (url.pathname === "/thresholds.json" && thresholdsPath) return serveFile(thresholdsPath, res);
          next();
        });
      },
    },
  ],
});
await server.listen();
const address = server.httpServer?.address();
const port = typeof address === "object" && address ? address.port : 0;

const { meter, unavailable } = await chooseMeter({ estimate: { utilisation: "system" } });
const browser = await chromium.launch({
  executablePath: opts.chromium,
  headless: true,
  args: [
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ],
});
let exitCode = 0;
try {
  const page = await browser.newPage();
  let mark: EnergyMark | null = null;
  let energy: EnergyMeasurement | null = null;
  await page.exposeFunction("catsPhase", async (phase: string) => {
    if (phase === "start") mark = await meter.start();
    else if (mark) energy = await meter.stop(mark);
  });
  const params = new URLSearchParams({
    model: "/models/m",
    sparsity: opts.sparsity.join(","),
    tokens: String(opts.tokens),
    runs: String(opts.runs),
    promptTokens: String(opts.promptTokens),
  });
  if (thresholdsPath) params.set("thresholds", "/thresholds.json");
  if (opts.prompt !== undefined) params.set("prompt", opts.prompt);
  if (opts.tune === false) params.set("tune", "off");
  await page.goto(`http://127.0.0.1:${port}/index.html?${params}`);
  await page.waitForFunction(() => window.catsResult !== undefined || window.catsError !== undefined, undefined, {
    timeout: opts.timeout * 1000,
    polling: 500,
  });
  const error = await page.evaluate(() => window.catsError);
  if (error) throw new Error(`page: ${error}`);
  const result = (await page.evaluate(() => window.catsResult)) as PageResult;
  const version = browser.version();
  const measured = energy as EnergyMeasurement | null;
  const report = buildReport(result.samples, {
    runtime: `Chromium ${version} headless, WebGPU`,
    modelName: result.modelName === "m" ? modelDir.split("/").pop()! : result.modelName,
    synthetic: result.synthetic,
    adapter: result.adapter,
    kernels: result.kernels,
    promptTokens: result.promptTokens,
    tokens: opts.tokens,
    runs: opts.runs,
    meter: null,
    unavailable,
    weightBytes: result.weightBytes,
    hostEnergy: measured ? { source: meter.source, description: meter.description, joules: measured.joules } : undefined,
  });
  if (report.energy_meter && meter.constants) report.energy_meter.constants = meter.constants;
  process.stdout.write(opts.json ? JSON.stringify(report) + "\n" : markdownTable(report));
  await prepareOutputDir("--out", opts.out);
  await writeReport(opts.out, report);
} catch (e) {
  console.error(`bench:chrome: ${(e as Error).message}`);
  exitCode = 1;
} finally {
  await browser.close();
  await server.close();
}
process.exit(exitCode);
