/**
 * `npm run bench:peers`: cats against other runtimes on the same weights. Exports the model with
 * `cats export onnx`, then runs the same prompt, greedy, N new tokens, in one interleaved series of R
 * runs: cats (Node, Dawn), onnxruntime-node (CPU EP, WebGPU EP), and in headless Chromium
 * transformers.js and onnxruntime-web (WebGPU, wasm), plus cats in Chromium through bench:chrome.
 * Every peer is timed the same way: prefill = the prompt's step, decode = the N-1 single-token steps
 * after it; medians over runs. A peer that fails is a row with its error.
 *   node dist/bench/peers.js [--model DIR|NAME] [--tokens N] [--runs R] [--prompt TEXT] [--out DIR] [--json] [--no-web]
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir, type as osType, release } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import * as ort from "onnxruntime-node";
import { positiveInt } from "../src/cli/args.js";
import { prepareOutputDir, writeFileAtomic } from "../src/files.js";
import { loadModel, type LoadedModel } from "../src/node.js";
import { projectRoot, resolveModelDir } from "../src/model/resolve.js";
import type { BenchReport } from "../src/sparsity-bench/report.js";
import { WebPeers, type WebPeer, type WebRun } from "./web-peers.js";
import { ortGreedy } from "../harness/ort-greedy.js";

const opts = new Command("bench-peers")
  .option("--model <dir>", "model directory or name", "stories260K")
  .option("--tokens <n>", "greedy tokens per run (prefill's token included)", positiveInt, 32)
  .option("--runs <r>", "measured runs per peer, interleaved", positiveInt, 3)
  .option("--prompt <text>", "prompt text (BOS added)", "Once upon a time")
  .option("--out <dir>", "where peers.json and peers.md go", "bench-out/peers")
  .option("--json", "print the JSON report")
  .option("--no-web", "skip the Chromium peers")
  .option("--chromium <path>", "browser executable", "/usr/bin/chromium")
  .parse()
  .opts<{ model: string; tokens: number; runs: number; prompt: string; out: string; json?: boolean; web: boolean; chromium: string }>();

interface Peer {
  name: string;
  runtime: string;
  adapter: string;
  /** One greedy run (after a warm-up); throws when the peer cannot run. */
  run(): Promise<WebRun>;
}

interface PeerRow {
  peer: string;
  runtime: string;
  adapter: string;
  decode_tokens_per_s: number | null;
  decode_ms_per_token: number | null;
  prefill_ms: number | null;
  greedy_ids_equal_cats: boolean | null;
  ids: number[] | null;
  runs: number;
  error: string | null;
  note?: string;
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const message = (e: unknown): string => ((e as Error)?.message ?? String(e)).split("\n")[0].slice(0, 300);

function node(args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: projectRoot(), timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function catsPeer(lm: LoadedModel, prompt: number[], tokens: number): Peer {
  const a = lm.gpu.adapter;
  return {
    name: "cats",
    runtime: `Node ${process.version} + Dawn (webgpu npm)`,
    adapter: a.description || a.device || a.vendor,
    async run() {
      lm.engine.reset();
      const t0 = performance.now();
      const first = await lm.engine.prefill(prompt);
      const run: WebRun = { ids: [first.token], prefillMs: performance.now() - t0, stepMs: [] };
      for (let i = 1; i < tokens; i++) {
        const s = performance.now();
        run.ids.push((await lm.engine.decode()).token);
        run.stepMs.push(performance.now() - s);
      }
      return run;
    },
  };
}

async function ortNodePeer(file: string, ep: "cpu" | "webgpu", prompt: number[], tokens: number): Promise<Peer> {
  const session = await ort.InferenceSession.create(file, { executionProviders: [ep] });
  return {
    name: `onnxruntime-node ${ep === "cpu" ? "CPU" : "WebGPU"} EP`,
    runtime: `onnxruntime-node ${ort.env.versions.node ?? ""} (Node ${process.version})`,
    adapter:
      ep === "cpu"
        ? `CPU, ${cpus().length} cores (default threads)`
        : "Dawn inside onnxruntime-node, Vulkan (lavapipe is this machine's only Vulkan device)",
    async run(): Promise<WebRun> {
      const r = await ortGreedy(session, prompt, tokens);
      return { ids: r.newIds, prefillMs: r.stepMs[0], stepMs: r.stepMs.slice(1) };
    },
  };
}

function webPeer(web: WebPeers, peer: WebPeer, prompt: number[], tokens: number): Peer {
  const p: Peer = {
    name: `${peer.library} ${peer.device === "webgpu" ? "WebGPU" : "wasm"}`,
    runtime: `Chromium ${web.version} headless`,
    adapter: "",
    async run() {
      const r = await web.run(peer, "fp32", prompt, tokens, 1);
      p.adapter = r.adapter;
      return r.runs[0];
    },
  };
  return p;
}

function markdown(report: {
  model: string;
  date: string;
  machine: string;
  export_seconds: number;
  tokens: number;
  prompt_tokens: number;
  runs: number;
  peers: PeerRow[];
}): string {
  const f = (v: number | null, d: number) => (v === null ? "–" : v.toFixed(d));
  const lines = [
    `Peers on ${report.model} (${report.machine}; ${report.date}); prompt ${report.prompt_tokens} tokens, ${report.tokens} greedy tokens, median of ${report.runs} interleaved runs; decode = the ${report.tokens - 1} single-token steps after prefill.`,
    "",
    "| peer | runtime | adapter / device | decode tok/s | ms/token | prefill ms | ids = cats |",
    "| --- | --- | --- | ---: | ---: | ---: | --- |",
  ];
  for (const p of report.peers) {
    const ids = p.greedy_ids_equal_cats === null ? "–" : p.greedy_ids_equal_cats ? "yes" : "no";
    const adapter = p.error ? `error: ${p.error.replace(/\|/g, "\\|")}` : p.adapter;
    lines.push(
      `| ${p.peer} | ${p.runtime} | ${adapter} | ${f(p.decode_tokens_per_s, 1)} | ${f(p.decode_ms_per_token, 2)} | ${f(p.prefill_ms, 1)} | ${ids}${p.note ? ` (${p.note})` : ""} |`,
    );
  }
  return lines.join("\n") + "\n";
}

const modelDir = resolveModelDir(opts.model);
await prepareOutputDir("--out", opts.out);
const exportDir = mkdtempSync(join(tmpdir(), "cats-peers-"));
let exitCode = 0;
try {
  const exp = await node(
    [join(projectRoot(), "bin/cats.js"), "export", "onnx", "--model", modelDir, "--out", exportDir, "--json"],
    600_000,
  );
  if (exp.code !== 0) throw new Error(`cats export onnx failed: ${exp.stderr.trim()}`);
  const exportSeconds = (JSON.parse(exp.stdout) as { seconds: number }).seconds;
  const onnxFile = join(exportDir, "onnx/model.onnx");

  // Dense, as the peers run: W_up in row blocks where they apply (UpLayout).
  const lm = await loadModel(modelDir, { upLayout: "blocks" });
  const prompt = lm.tokenizer.encode(opts.prompt, true);
  const peers: (Peer | PeerRow)[] = [catsPeer(lm, prompt, opts.tokens)];
  const failed = (peer: string, runtime: string, e: unknown): PeerRow => ({
    peer,
    runtime,
    adapter: "",
    decode_tokens_per_s: null,
    decode_ms_per_token: null,
    prefill_ms: null,
    greedy_ids_equal_cats: null,
    ids: null,
    runs: 0,
    error: message(e),
  });
  for (const ep of ["cpu", "webgpu"] as const) {
    try {
      peers.push(await ortNodePeer(onnxFile, ep, prompt, opts.tokens));
    } catch (e) {
      peers.push(failed(`onnxruntime-node ${ep === "cpu" ? "CPU" : "WebGPU"} EP`, "onnxruntime-node", e));
    }
  }
  let web: WebPeers | null = null;
  if (opts.web) {
    try {
      web = await WebPeers.open(exportDir, { webgpu: true, chromium: opts.chromium });
      for (const library of ["transformers.js", "onnxruntime-web"] as const)
        for (const device of ["webgpu", "wasm"] as const) peers.push(webPeer(web, { library, device }, prompt, opts.tokens));
    } catch (e) {
      peers.push(failed("transformers.js / onnxruntime-web", "Chromium headless", e));
    }
  }

  // Warm-up run of each peer (loads sessions, compiles shaders), then R rounds, peers interleaved.
  const runs = new Map<Peer, WebRun[]>();
  const errors = new Map<Peer, string>();
  const live = () => peers.filter((p): p is Peer => "run" in p && !errors.has(p));
  for (let r = -1; r < opts.runs; r++) {
    for (const p of live()) {
      process.stderr.write(`bench:peers: ${r < 0 ? "warm-up" : `run ${r + 1}/${opts.runs}`} ${p.name}\n`);
      try {
        const one = await p.run();
        if (r >= 0) runs.set(p, [...(runs.get(p) ?? []), one]);
      } catch (e) {
        errors.set(p, message(e));
      }
    }
  }
  await web?.close();
  await lm.close();

  const catsIds = runs.get(peers[0] as Peer)?.at(-1)?.ids ?? null;
  const rows: PeerRow[] = peers.map((p) => {
    if (!("run" in p)) return p;
    const rs = runs.get(p) ?? [];
    const err = errors.get(p) ?? null;
    if (err !== null || rs.length === 0) return { ...failed(p.name, p.runtime, err ?? "no runs"), adapter: p.adapter };
    const msPerToken = median(rs.map((r) => r.stepMs.reduce((a, b) => a + b, 0) / Math.max(1, r.stepMs.length)));
    const ids = rs.at(-1)!.ids;
    return {
      peer: p.name,
      runtime: p.runtime,
      adapter: p.adapter,
      decode_tokens_per_s: 1000 / msPerToken,
      decode_ms_per_token: msPerToken,
      prefill_ms: median(rs.map((r) => r.prefillMs)),
      greedy_ids_equal_cats: catsIds === null ? null : JSON.stringify(ids) === JSON.stringify(catsIds),
      ids,
      runs: rs.length,
      error: null,
    };
  });

  // cats in Chromium: bench:chrome runs its own page (and its own runs), so it is not interleaved.
  if (opts.web) {
    const chromeOut = mkdtempSync(join(tmpdir(), "cats-peers-chrome-"));
    const runtime = "Chromium headless, WebGPU (bench:chrome page)";
    try {
      const c = await node(
        [
          join(projectRoot(), "dist/bench/chrome.js"),
          "--model",
          modelDir,
          "--prompt",
          opts.prompt,
          "--tokens",
          String(opts.tokens),
          "--runs",
          String(opts.runs),
          "--json",
          "--out",
          chromeOut,
          "--chromium",
          opts.chromium,
        ],
        900_000,
      );
      if (c.code !== 0) throw new Error(c.stderr.trim() || `exit ${c.code}`);
      const rep = JSON.parse(c.stdout) as BenchReport;
      const lv = rep.levels[0];
      const ms = lv.decode_ms_per_token.median;
      const ids = lv.greedy_ids;
      rows.push({
        peer: "cats (Chromium)",
        runtime: rep.runtime,
        adapter: rep.adapter,
        decode_tokens_per_s: 1000 / ms,
        decode_ms_per_token: ms,
        prefill_ms: (rep.prompt_tokens / lv.prefill_tokens_per_s) * 1000,
        greedy_ids_equal_cats: catsIds === null ? null : JSON.stringify(ids) === JSON.stringify(catsIds),
        ids,
        runs: opts.runs,
        error: null,
        note: "own series, not interleaved; ms/token is bench:chrome's median step",
      });
    } catch (e) {
      rows.push(failed("cats (Chromium)", runtime, e));
    } finally {
      rmSync(chromeOut, { recursive: true, force: true });
    }
  }

  const report = {
    model: modelDir.split("/").pop()!,
    date: new Date().toISOString(),
    machine: `${cpus().length}-core ${osType()} ${release()}, ${cpus()[0]?.model ?? "unknown CPU"}; no GPU (lavapipe / SwiftShader)`,
    export_seconds: exportSeconds,
    prompt,
    prompt_tokens: prompt.length,
    tokens: opts.tokens,
    runs: opts.runs,
    protocol: "greedy; prefill = the prompt in one step; decode ms/token = mean of the N-1 single-token steps after it, median over runs",
    peers: rows,
  };
  const md = markdown(report);
  process.stdout.write(opts.json ? JSON.stringify(report) + "\n" : md);
  await writeFileAtomic(join(opts.out, "peers.json"), JSON.stringify(report, null, 2) + "\n");
  await writeFileAtomic(join(opts.out, "peers.md"), md);
} catch (e) {
  console.error(`bench:peers: ${message(e)}`);
  exitCode = 1;
} finally {
  rmSync(exportDir, { recursive: true, force: true });
}
process.exit(exitCode);
