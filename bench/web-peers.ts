/**
 * transformers.js and onnxruntime-web on an exported model in headless Chromium, served from a local
 * HTTP server (no network): the export at /models/m/, transformers.js' browser build at /tjs/,
 * onnxruntime-web's dist (modules and wasm) at /ort/. Used by bench:peers and the export tests.
 */
import { createReadStream, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { projectRoot } from "../src/model/resolve.js";

/** One greedy run in the page: per-step times so every peer reports prefill and decode the same way. */
export interface WebRun {
  ids: number[];
  prefillMs: number;
  /** The single-token steps after prefill, in ms. */
  stepMs: number[];
}

export interface WebPeerResult {
  adapter: string;
  runs: WebRun[];
}

export type WebPeer = { library: "transformers.js" | "onnxruntime-web"; device: "webgpu" | "wasm" };

const TYPES: Record<string, string> = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
};

const IMPORT_MAP = {
  imports: {
    // transformers.web.js imports these bare names; one URL keeps one onnxruntime instance (one env, one Tensor class).
    "onnxruntime-web/webgpu": "/ort/ort.webgpu.bundle.min.mjs",
    "onnxruntime-common": "/ort/ort.webgpu.bundle.min.mjs",
  },
};

const PAGE = `<!doctype html><meta charset="utf-8"><script type="importmap">${JSON.stringify(IMPORT_MAP)}</script><script type="module" src="/peers.js"></script>`;

/**
 * The page's runner. The ort module is imported and wasmPaths set before transformers.js loads,
 * because transformers.js points wasmPaths at a CDN on import when it is unset.
 */
const PAGE_JS = `
const ort = await import("/ort/ort.webgpu.bundle.min.mjs");
ort.env.wasm.wasmPaths = "/ort/";
ort.env.wasm.numThreads = 1;
ort.env.logLevel = "error";
const T = await import("/tjs/transformers.web.js");
T.env.allowRemoteModels = false;
T.env.allowLocalModels = true;
T.env.localModelPath = "/models/";
T.env.useBrowserCache = false;

async function adapterInfo(device) {
  if (device !== "webgpu") return "wasm (CPU, 1 thread)";
  if (!navigator.gpu) throw new Error("navigator.gpu is undefined (no WebGPU in this browser)");
  const a = await navigator.gpu.requestAdapter();
  if (!a) throw new Error("navigator.gpu.requestAdapter() gave no adapter");
  const i = a.info ?? {};
  return [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" / ") || "unknown adapter";
}

const i64 = (v) => new ort.Tensor("int64", BigInt64Array.from(v.map(BigInt)), [1, v.length]);
const tjs64 = (v) => new T.Tensor("int64", BigInt64Array.from(v.map(BigInt)), [1, v.length]);

// Sessions and models stay loaded between calls: bench:peers interleaves single runs of every peer.
const loaded = new Map();
const once = (key, make) => {
  if (!loaded.has(key)) loaded.set(key, make());
  return loaded.get(key);
};

async function ortRuns(device, file, prompt, tokens, runs) {
  const session = await once("ort " + device + " " + file, () => ort.InferenceSession.create(file, { executionProviders: [device] }));
  const past = session.inputNames.filter((n) => n.startsWith("past_key_values."));
  const meta = new Map((session.inputMetadata ?? []).map((m) => [m.name, m]));
  const out = [];
  for (let r = 0; r < runs; r++) {
    const feeds = {};
    for (const name of past) {
      const m = meta.get(name);
      const shape = m.shape.map((d) => (typeof d === "number" ? d : d === "batch_size" ? 1 : 0));
      feeds[name] = m.type === "float16" ? new ort.Tensor("float16", new Uint16Array(0), shape) : new ort.Tensor("float32", new Float32Array(0), shape);
    }
    let step = prompt, total = 0;
    const run = { ids: [], prefillMs: 0, stepMs: [] };
    for (let s = 0; s < tokens; s++) {
      const t0 = performance.now();
      const positions = step.map((_, i) => total + i);
      total += step.length;
      const res = await session.run({ ...feeds, input_ids: i64(step), attention_mask: i64(new Array(total).fill(1)), position_ids: i64(positions) });
      const logits = await res.logits.getData();
      const V = res.logits.dims[2];
      let best = 0;
      const base = (step.length - 1) * V;
      for (let i = 1; i < V; i++) if (logits[base + i] > logits[base + best]) best = i;
      for (const name of past) feeds[name] = res[name.replace("past_key_values.", "present.")];
      const ms = performance.now() - t0;
      if (s === 0) run.prefillMs = ms; else run.stepMs.push(ms);
      run.ids.push(best);
      step = [best];
    }
    out.push(run);
  }
  return out;
}

async function tjsRuns(device, dtype, prompt, tokens, runs) {
  const model = await once("tjs " + device + " " + dtype, () => T.AutoModelForCausalLM.from_pretrained("m", { dtype, device }));
  const out = [];
  for (let r = 0; r < runs; r++) {
    // put() is called once with the prompt, then once per new token: its times give every step.
    const marks = [];
    const streamer = { put() { marks.push(performance.now()); }, end() {} };
    const t0 = performance.now();
    const res = await model.generate({ input_ids: tjs64(prompt), attention_mask: tjs64(prompt.map(() => 1)), max_new_tokens: tokens, min_new_tokens: tokens, do_sample: false, streamer });
    const all = Array.from(res.data ?? res.tolist()[0], Number).slice(prompt.length);
    const steps = marks.slice(1);
    const stepMs = steps.slice(1).map((t, i) => t - steps[i]);
    out.push({ ids: all, prefillMs: (steps[0] ?? performance.now()) - t0, stepMs });
  }
  return out;
}

window.peerRun = async ({ library, device, dtype, prompt, tokens, runs }) => {
  const adapter = await adapterInfo(device);
  const file = dtype === "fp16" ? "/models/m/onnx/model_fp16.onnx" : "/models/m/onnx/model.onnx";
  const r = library === "onnxruntime-web" ? await ortRuns(device, file, prompt, tokens, runs) : await tjsRuns(device, dtype, prompt, tokens, runs);
  return { adapter, runs: r };
};
window.peerReady = true;
`;

function serve(roots: Record<string, string>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
    // Cross-origin isolation lets onnxruntime-web use SharedArrayBuffer (it checks crossOriginIsolated).
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
    if (path === "/" || path === "/index.html") return void res.setHeader("content-type", "text/html").end(PAGE);
    if (path === "/peers.js") return void res.setHeader("content-type", "text/javascript").end(PAGE_JS);
    for (const [prefix, root] of Object.entries(roots)) {
      if (!path.startsWith(prefix)) continue;
      const file = normalize(join(root, path.slice(prefix.length)));
      if (!file.startsWith(root + sep)) break;
      let size: number;
      try {
        const s = statSync(file);
        if (!s.isFile()) break;
        size = s.size;
      } catch {
        break;
      }
      res.setHeader("content-type", TYPES[extname(file)] ?? "application/octet-stream");
      res.setHeader("content-length", size);
      createReadStream(file).pipe(res);
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      resolve({ server, url: `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}/` });
    }),
  );
}

export const WEBGPU_FLAGS = [
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
];
const QUIET_FLAGS = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** A browser with the page loaded, ready for `run`. */
export class WebPeers {
  private constructor(
    private readonly browser: Browser,
    private readonly server: Server,
    private readonly page: import("playwright-core").Page,
  ) {}

  static async open(exportDir: string, options: { webgpu: boolean; chromium?: string }): Promise<WebPeers> {
    const nm = join(projectRoot(), "node_modules");
    const { server, url } = await serve({
      "/models/m/": exportDir,
      "/tjs/": join(nm, "@huggingface/transformers/dist"),
      "/ort/": join(nm, "onnxruntime-web/dist"),
    });
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({
        executablePath: options.chromium ?? "/usr/bin/chromium",
        headless: true,
        args: [...QUIET_FLAGS, ...(options.webgpu ? WEBGPU_FLAGS : ["--disable-gpu"])],
      });
      const page = await browser.newPage();
      await page.goto(url);
      await page.waitForFunction(() => (window as unknown as { peerReady?: boolean }).peerReady === true, undefined, { timeout: 60_000 });
      return new WebPeers(browser, server, page);
    } catch (e) {
      await browser?.close();
      server.close();
      throw e;
    }
  }

  get version(): string {
    return this.browser.version();
  }

  async run(peer: WebPeer, dtype: "fp32" | "fp16", prompt: number[], tokens: number, runs: number): Promise<WebPeerResult> {
    return this.page.evaluate((args) => (window as unknown as { peerRun: (a: unknown) => Promise<WebPeerResult> }).peerRun(args), {
      ...peer,
      dtype,
      prompt,
      tokens,
      runs,
    });
  }

  async close(): Promise<void> {
    await this.browser.close();
    await new Promise((r) => this.server.close(r));
  }
}
