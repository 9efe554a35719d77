import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cachedSnapshot } from "../src/hub/cache.js";
import { pullModel } from "../src/hub/pull.js";
import { resolveModelDir } from "../src/model/resolve.js";
import { CatsError } from "../src/errors.js";
import { cats, MODELS, reference } from "./helpers.js";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"];
const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

interface Repo {
  files: Map<string, Buffer>;
  /** What the tree listing advertises as the LFS sha256 (a wrong one for the tampered repo). */
  lfsSha: (path: string, bytes: Buffer) => string;
}

/**
 * A small hub on 127.0.0.1 in the URL layout @huggingface/hub and Python's huggingface_hub use:
 * model info, the tree listing, and /resolve/ with Range requests. Hooks let a test cut a download
 * or record headers.
 */
class TestHub {
  server!: Server;
  url = "";
  repos = new Map<string, Repo>();
  requests: { url: string; headers: IncomingMessage["headers"] }[] = [];
  /** Bytes after which the next response for this path is cut, once. */
  cutOnce = new Map<string, number>();

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.requests.push({ url: req.url ?? "", headers: req.headers });
      const u = new URL(req.url ?? "/", "http://x");
      let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(u.pathname);
      if (m && this.repos.has(m[1])) {
        res.writeHead(200, { "Content-Type": "application/json" });
        return res.end(JSON.stringify({ _id: "x", id: m[1], sha: COMMIT, private: false, siblings: [] }));
      }
      m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(u.pathname);
      if (m && this.repos.has(m[1])) {
        const repo = this.repos.get(m[1])!;
        const list = [...repo.files].map(([path, b]) =>
          path.endsWith(".safetensors")
            ? {
                type: "file",
                path,
                size: b.length,
                oid: gitOid(Buffer.from("pointer")),
                lfs: { oid: repo.lfsSha(path, b), size: b.length, pointerSize: 130 },
              }
            : { type: "file", path, size: b.length, oid: gitOid(b) },
        );
        res.writeHead(200, { "Content-Type": "application/json" });
        return res.end(JSON.stringify(list));
      }
      m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(u.pathname);
      const file = m ? this.repos.get(m[1])?.files.get(decodeURIComponent(m[3])) : undefined;
      if (!m || !file) {
        res.writeHead(404);
        return res.end("not found");
      }
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
      const from = range ? Number(range[1]) : 0;
      const body = file.subarray(from);
      res.writeHead(range ? 206 : 200, {
        "Content-Length": body.length,
        ...(range ? { "Content-Range": `bytes ${from}-${file.length - 1}/${file.length}` } : {}),
      });
      const cut = this.cutOnce.get(m[3]);
      if (cut !== undefined) {
        this.cutOnce.delete(m[3]);
        res.write(body.subarray(0, cut), () => res.socket?.destroy());
        return;
      }
      res.end(body);
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}

const hub = new TestHub();
const stories = new Map(FILES.map((f) => [f, readFileSync(join(MODELS, "stories260K", f))]));
beforeAll(async () => {
  hub.repos.set("test-org/stories260K", { files: stories, lfsSha: (_p, b) => sha256(b) });
  const tampered = new Map(stories);
  const bad = Buffer.from(stories.get("model.safetensors")!);
  bad[bad.length - 1] ^= 0xff;
  tampered.set("model.safetensors", bad);
  // The listing advertises the real file's sha256, the download serves other bytes.
  hub.repos.set("test-org/tampered", {
    files: tampered,
    lfsSha: (p, b) => (p === "model.safetensors" ? sha256(stories.get(p)!) : sha256(b)),
  });
  await hub.start();
});
afterAll(() => hub.stop());

const envFor = (cache: string, more: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  HF_ENDPOINT: hub.url,
  HF_HUB_CACHE: cache,
  ...more,
});

describe("models where Hugging Face keeps them", () => {
  it("cats pull writes the HF cache layout, and --model org/name then loads from it", async () => {
    const cache = mkdtempSync(join(tmpdir(), "cats-hf-"));
    const r = await cats(["pull", "test-org/stories260K"], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
    expect(r.errors).toEqual([]);
    expect(r.status).toBe(0);
    const folder = join(cache, "models--test-org--stories260K");
    expect(readFileSync(join(folder, "refs", "main"), "utf8")).toBe(COMMIT);
    const snapshot = join(folder, "snapshots", COMMIT);
    expect(r.stdout.trim()).toBe(snapshot);
    expect(readlinkSync(join(snapshot, "model.safetensors"))).toBe(join("..", "..", "blobs", sha256(stories.get("model.safetensors")!)));
    expect(readlinkSync(join(snapshot, "config.json"))).toBe(join("..", "..", "blobs", gitOid(stories.get("config.json")!)));
    expect(readdirSync(join(folder, "blobs")).filter((f) => f.endsWith(".incomplete"))).toEqual([]);
    expect(resolveModelDir("test-org/stories260K", envFor(cache))).toBe(snapshot);
    const ref = reference("stories260K");
    const g = await cats(["generate", "--model", "test-org/stories260K", "--max-tokens", "32", "--json", ref.prompt], {
      HF_HUB_CACHE: cache,
    });
    expect(JSON.parse(g.stdout).ids).toEqual(ref.greedy_new_ids);
  });

  it("resumes a download cut in the middle, with a Range request, to a bit-identical file", async () => {
    const cache = mkdtempSync(join(tmpdir(), "cats-hf-"));
    hub.cutOnce.set("model.safetensors", 300_000);
    const first = pullModel({ repo: "test-org/stories260K", revision: "main" }, { env: envFor(cache) });
    await expect(first).rejects.toThrow(/model\.safetensors: (the download was cut at byte|got) \d+ of \d+/);
    const blobs = join(cache, "models--test-org--stories260K", "blobs");
    const partial = readdirSync(blobs).find((f) => f.endsWith(".incomplete"))!;
    expect(readFileSync(join(blobs, partial)).length).toBeGreaterThan(0);
    hub.requests = [];
    const dir = await pullModel({ repo: "test-org/stories260K", revision: "main" }, { env: envFor(cache) });
    const resumed = hub.requests.find((r) => r.url.endsWith("/model.safetensors"));
    expect(resumed?.headers.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(sha256(readFileSync(join(dir, "model.safetensors")))).toBe(sha256(stories.get("model.safetensors")!));
  });

  it("rejects a file whose bytes do not match the hub's sha256, leaving nothing that looks complete", async () => {
    const cache = mkdtempSync(join(tmpdir(), "cats-hf-"));
    const pull = pullModel({ repo: "test-org/tampered", revision: "main" }, { env: envFor(cache) });
    await expect(pull).rejects.toThrow(CatsError);
    await expect(pullModel({ repo: "test-org/tampered", revision: "main" }, { env: envFor(cache) })).rejects.toThrow(
      /model\.safetensors: sha256 [0-9a-f]{64} does not match the hub's [0-9a-f]{64}; the download was discarded/,
    );
    const blobs = readdirSync(join(cache, "models--test-org--tampered", "blobs"));
    expect(blobs).not.toContain(sha256(stories.get("model.safetensors")!));
    expect(blobs.filter((f) => f.endsWith(".incomplete"))).toEqual([]);
    expect(cachedSnapshot({ repo: "test-org/tampered", revision: "main" }, envFor(cache))).toBeNull();
  });

  it("sends HF_TOKEN as a bearer token", async () => {
    const cache = mkdtempSync(join(tmpdir(), "cats-hf-"));
    hub.requests = [];
    await pullModel({ repo: "test-org/stories260K", revision: "main" }, { env: envFor(cache, { HF_TOKEN: "hf_testtoken" }) });
    expect(hub.requests.length).toBeGreaterThan(2);
    for (const r of hub.requests) expect(r.headers.authorization).toBe("Bearer hf_testtoken");
  });

  it("loads a directory laid out by Python's huggingface_hub (symlinks into blobs/), at main or at the commit", () => {
    const cache = mkdtempSync(join(tmpdir(), "cats-hf-"));
    const folder = join(cache, "models--someone--tiny");
    mkdirSync(join(folder, "blobs"), { recursive: true });
    mkdirSync(join(folder, "snapshots", COMMIT), { recursive: true });
    mkdirSync(join(folder, "refs"));
    writeFileSync(join(folder, "refs", "main"), COMMIT);
    for (const [name, bytes] of stories) {
      const blob = name.endsWith(".safetensors") ? sha256(bytes) : gitOid(bytes);
      writeFileSync(join(folder, "blobs", blob), bytes);
      symlinkSync(join("..", "..", "blobs", blob), join(folder, "snapshots", COMMIT, name));
    }
    const env = envFor(cache);
    const dir = resolveModelDir("someone/tiny", env);
    expect(dir).toBe(join(folder, "snapshots", COMMIT));
    expect(resolveModelDir(`someone/tiny@${COMMIT}`, env)).toBe(dir);
    expect(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).vocab_size).toBe(512);
    expect(() => resolveModelDir("someone/other", env)).toThrow(
      /model "someone\/other" not found: .*Hugging Face cache .*cats pull someone\/other downloads it/,
    );
    expect(existsSync(join(dir, "model.safetensors"))).toBe(true);
  });
});
