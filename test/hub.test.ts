import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cachedSnapshot, hubCacheDir, parseRepoId } from "../src/hub/cache.js";
import { pullModel, type PullProgress } from "../src/hub/pull.js";
import { resolveModelDir } from "../src/model/resolve.js";
import { CatsError } from "../src/errors.js";
import { cats, MODELS, reference, tempDir } from "./helpers.js";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const V1_COMMIT = "89abcdef0123456789abcdef0123456789abcdef";
const FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"];
const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

interface Repo {
  files: Map<string, Buffer>;
  /** What the tree listing advertises for a file: the LFS sha256 of .safetensors, the git blob id of the rest. */
  advertised?: (path: string, bytes: Buffer) => Buffer;
}

/**
 * A small hub on 127.0.0.1 in the URL layout @huggingface/hub uses: model info
 * (/api/models/<repo>/revision/<rev>, which gives the commit), the tree listing
 * (/api/models/<repo>/tree/<commit>), and /<repo>/resolve/<commit>/<path> with Range requests, ETag,
 * X-Repo-Commit and, for LFS files, X-Linked-Etag / X-Linked-Size as the real hub sends them.
 * Hooks let a test cut a download, ignore Range, or record requests.
 */
class TestHub {
  server!: Server;
  url = "";
  repos = new Map<string, Repo>();
  requests: { url: string; headers: IncomingMessage["headers"] }[] = [];
  /** Bytes after which the next response for this path is cut (the connection dropped), once. */
  cutOnce = new Map<string, number>();
  /** Serve whole files with 200 even when a Range is asked for. */
  ignoreRange = false;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.requests.push({ url: req.url ?? "", headers: req.headers });
      const u = new URL(req.url ?? "/", "http://x");
      const json = (body: unknown) => {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify(body));
      };
      let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(u.pathname);
      if (m && this.repos.has(m[1])) {
        const sha = decodeURIComponent(m[2]) === "v1.0" ? V1_COMMIT : COMMIT;
        return json({ _id: "x", id: m[1], sha, private: false, siblings: [] });
      }
      m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(u.pathname);
      if (m && this.repos.has(m[1])) {
        const repo = this.repos.get(m[1])!;
        const listed = (path: string, b: Buffer) => repo.advertised?.(path, b) ?? b;
        return json(
          [...repo.files].map(([path, b]) =>
            path.endsWith(".safetensors")
              ? {
                  type: "file",
                  path,
                  size: b.length,
                  oid: gitOid(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(b)}\n`)),
                  lfs: { oid: sha256(listed(path, b)), size: b.length, pointerSize: 134 },
                }
              : { type: "file", path, size: b.length, oid: gitOid(listed(path, b)) },
          ),
        );
      }
      m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(u.pathname);
      const path = m ? decodeURIComponent(m[3]) : "";
      const file = m ? this.repos.get(m[1])?.files.get(path) : undefined;
      if (!m || !file) {
        res.writeHead(404, { "Content-Type": "application/json", "X-Error-Code": "RepoNotFound" });
        return res.end(JSON.stringify({ error: "Repository not found" }));
      }
      const range = this.ignoreRange ? null : /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
      const from = range ? Number(range[1]) : 0;
      const body = file.subarray(from);
      const lfs = path.endsWith(".safetensors");
      res.writeHead(range ? 206 : 200, {
        "Content-Length": body.length,
        "Accept-Ranges": "bytes",
        ETag: `"${lfs ? sha256(file) : gitOid(file)}"`,
        "X-Repo-Commit": m[2],
        ...(lfs ? { "X-Linked-Etag": `"${sha256(file)}"`, "X-Linked-Size": String(file.length) } : {}),
        ...(range ? { "Content-Range": `bytes ${from}-${file.length - 1}/${file.length}` } : {}),
      });
      const cut = this.cutOnce.get(path);
      if (cut !== undefined) {
        this.cutOnce.delete(path);
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
const weights = stories.get("model.safetensors")!;
const flipLast = (b: Buffer) => {
  const bad = Buffer.from(b);
  bad[bad.length - 1] ^= 0xff;
  return bad;
};
beforeAll(async () => {
  hub.repos.set("test-org/stories260K", { files: stories });
  // The listing advertises the real file's checksum; the download serves other bytes.
  hub.repos.set("test-org/extras", {
    files: new Map([
      ...stories,
      ["generation_config.json", Buffer.alloc(0)],
      ["pytorch_model.bin", Buffer.from("not for cats")],
      ["onnx/model.safetensors", Buffer.from("in a subfolder")],
    ]),
  });
  hub.repos.set("test-org/tampered", {
    files: new Map([...stories, ["model.safetensors", flipLast(weights)]]),
    advertised: (p, b) => (p === "model.safetensors" ? weights : b),
  });
  hub.repos.set("test-org/tampered-config", {
    files: new Map([...stories, ["config.json", flipLast(stories.get("config.json")!)]]),
    advertised: (p, b) => (p === "config.json" ? stories.get("config.json")! : b),
  });
  await hub.start();
});
afterAll(() => hub.stop());

const tempCache = () => tempDir("cats-hf-");
const envFor = (cache: string, more: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  CATS_MODELS: MODELS,
  HF_ENDPOINT: hub.url,
  HF_HUB_CACHE: cache,
  ...more,
});
const main = { repo: "test-org/stories260K", revision: "main" };

describe("models where Hugging Face keeps them", () => {
  it("pull writes the HF cache layout (blobs/, snapshots/<commit>/ symlinks, refs/main), and --model org/name resolves to it", async () => {
    const cache = tempCache();
    const seen: string[] = [];
    const progress: PullProgress = { start: (path) => seen.push(path), advance: () => {}, done: () => {} };
    const dir = await pullModel(main, { env: envFor(cache), progress });
    const folder = join(cache, "models--test-org--stories260K");
    const snapshot = join(folder, "snapshots", COMMIT);
    expect(dir).toBe(snapshot);
    expect(readFileSync(join(folder, "refs", "main"), "utf8")).toBe(COMMIT);
    expect(seen.sort()).toEqual([...FILES].sort());
    for (const [name, bytes] of stories) {
      const blob = name.endsWith(".safetensors") ? sha256(bytes) : gitOid(bytes);
      expect(readlinkSync(join(snapshot, name))).toBe(join("..", "..", "blobs", blob));
      expect(readFileSync(join(snapshot, name)).equals(bytes)).toBe(true);
    }
    expect(readdirSync(join(folder, "blobs")).sort()).toEqual(
      [...stories].map(([n, b]) => (n.endsWith(".safetensors") ? sha256(b) : gitOid(b))).sort(),
    );
    expect(resolveModelDir("test-org/stories260K", envFor(cache))).toBe(snapshot);
    expect(resolveModelDir(`test-org/stories260K@${COMMIT}`, envFor(cache))).toBe(snapshot);

    // A second pull finds every blob in place and downloads nothing.
    hub.requests = [];
    expect(await pullModel(main, { env: envFor(cache) })).toBe(snapshot);
    expect(hub.requests.filter((r) => r.url.includes("/resolve/"))).toEqual([]);
  });

  it("pull at another revision writes refs/<revision>, and org/name@revision resolves to its snapshot", async () => {
    const cache = tempCache();
    const dir = await pullModel({ repo: "test-org/stories260K", revision: "v1.0" }, { env: envFor(cache) });
    const folder = join(cache, "models--test-org--stories260K");
    expect(dir).toBe(join(folder, "snapshots", V1_COMMIT));
    expect(readFileSync(join(folder, "refs", "v1.0"), "utf8")).toBe(V1_COMMIT);
    expect(resolveModelDir("test-org/stories260K@v1.0", envFor(cache))).toBe(dir);
    expect(() => resolveModelDir("test-org/stories260K", envFor(cache))).toThrow(/cats pull test-org\/stories260K to download it/);
    await expect(pullModel({ repo: "test-org/stories260K", revision: "../../../escape" }, { env: envFor(cache) })).rejects.toThrow(
      /--revision "\.\.\/\.\.\/\.\.\/escape" is not a branch, tag or commit name/,
    );
  });

  it("downloads only the files cats reads (top-level config, tokenizer, safetensors), empty ones included", async () => {
    const cache = tempCache();
    hub.requests = [];
    const dir = await pullModel({ repo: "test-org/extras", revision: "main" }, { env: envFor(cache) });
    expect(readdirSync(dir).sort()).toEqual([...FILES, "generation_config.json"].sort());
    expect(readFileSync(join(dir, "generation_config.json")).length).toBe(0);
    expect(hub.requests.filter((r) => r.url.includes("/resolve/"))).toHaveLength(FILES.length);
  });

  it("resumes a download cut in the middle, with a Range request, to a bit-identical file", async () => {
    const cache = tempCache();
    const cutAt = 300_000;
    expect(weights.length).toBeGreaterThan(2 * cutAt);
    hub.cutOnce.set("model.safetensors", cutAt);
    await expect(pullModel(main, { env: envFor(cache) })).rejects.toThrow(
      /"model\.safetensors": (the download was cut at byte|got) \d+ of \d+.*run cats pull again to resume/,
    );
    const folder = join(cache, "models--test-org--stories260K");
    const blobs = join(folder, "blobs");
    expect(readdirSync(blobs)).not.toContain(sha256(weights));
    const partial = readdirSync(blobs).find((f) => f.endsWith(".incomplete"));
    expect(partial).toBe(`${sha256(weights)}.incomplete`);
    const kept = readFileSync(join(blobs, partial!)).length;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(cutAt);
    // Nothing points at the half-downloaded snapshot yet.
    expect(existsSync(join(folder, "refs", "main"))).toBe(false);
    expect(cachedSnapshot(main, envFor(cache))).toBeNull();

    hub.requests = [];
    const seen: [string, number][] = [];
    const progress: PullProgress = { start: (p, _size, from) => seen.push([p, from]), advance: () => {}, done: () => {} };
    const dir = await pullModel(main, { env: envFor(cache), progress });
    const resumed = hub.requests.filter((r) => r.url.endsWith("/model.safetensors"));
    expect(resumed.map((r) => r.headers.range)).toEqual([`bytes=${kept}-`]);
    expect(seen).toContainEqual(["model.safetensors", kept]);
    expect(readFileSync(join(dir, "model.safetensors")).equals(weights)).toBe(true);
    expect(readdirSync(blobs).filter((f) => f.endsWith(".incomplete"))).toEqual([]);
    expect(resolveModelDir("test-org/stories260K", envFor(cache))).toBe(dir);
  });

  it("starts a cut download over when the server ignores the Range request", async () => {
    const cache = tempCache();
    hub.cutOnce.set("model.safetensors", 100_000);
    await expect(pullModel(main, { env: envFor(cache) })).rejects.toThrow(CatsError);
    hub.ignoreRange = true;
    try {
      const dir = await pullModel(main, { env: envFor(cache) });
      expect(readFileSync(join(dir, "model.safetensors")).equals(weights)).toBe(true);
    } finally {
      hub.ignoreRange = false;
    }
  });

  it("rejects an LFS file whose bytes do not match the hub's sha256, leaving nothing that looks complete", async () => {
    const cache = tempCache();
    const env = envFor(cache);
    for (let run = 0; run < 2; run++) {
      const err = await pullModel({ repo: "test-org/tampered", revision: "main" }, { env }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CatsError);
      expect((err as Error).message).toMatch(
        /^"model\.safetensors": sha256 [0-9a-f]{64} does not match the hub's [0-9a-f]{64}; the download was discarded$/,
      );
    }
    const folder = join(cache, "models--test-org--tampered");
    const blobs = readdirSync(join(folder, "blobs"));
    expect(blobs).not.toContain(sha256(weights));
    expect(blobs.filter((f) => f.endsWith(".incomplete"))).toEqual([]);
    expect(existsSync(join(folder, "snapshots", COMMIT, "model.safetensors"))).toBe(false);
    expect(cachedSnapshot({ repo: "test-org/tampered", revision: "main" }, env)).toBeNull();
  });

  it("rejects a small (non-LFS) file whose bytes do not match its git blob id", async () => {
    const cache = tempCache();
    await expect(pullModel({ repo: "test-org/tampered-config", revision: "main" }, { env: envFor(cache) })).rejects.toThrow(
      /^"config\.json": git blob id [0-9a-f]{40} does not match the hub's [0-9a-f]{40}; the download was discarded$/,
    );
    expect(readdirSync(join(cache, "models--test-org--tampered-config", "blobs"))).toEqual([]);
  });

  it("reports a repository the hub does not have as one CatsError", async () => {
    const cache = tempCache();
    await expect(pullModel({ repo: "test-org/missing", revision: "main" }, { env: envFor(cache) })).rejects.toThrow(
      /test-org\/missing@main: not found, or gated or private \(HTTP 404\); check the name, or set HF_TOKEN/,
    );
  });

  it("sends HF_TOKEN as a bearer token on every request", async () => {
    const cache = tempCache();
    hub.requests = [];
    await pullModel(main, { env: envFor(cache, { HF_TOKEN: "hf_testtoken" }) });
    expect(hub.requests.map((r) => r.url)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\/api\/models\/test-org\/stories260K\/revision\/main/),
        expect.stringMatching(/\/tree\//),
      ]),
    );
    expect(hub.requests.filter((r) => r.url.includes("/resolve/"))).toHaveLength(FILES.length);
    for (const r of hub.requests) expect(r.headers.authorization).toBe("Bearer hf_testtoken");
    hub.requests = [];
    await pullModel(main, { env: envFor(tempCache()) });
    for (const r of hub.requests) expect(r.headers.authorization).toBeUndefined();
  });

  it("loads a directory laid out by Python's huggingface_hub (symlinks into blobs/), at main or at the commit", () => {
    const cache = tempCache();
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
    expect(readFileSync(join(dir, "model.safetensors")).equals(weights)).toBe(true);
    // HF_HOME/hub is the cache when HF_HUB_CACHE is unset.
    const home = tempDir("cats-hf-home-");
    symlinkSync(cache, join(home, "hub"));
    expect(resolveModelDir("someone/tiny", { ...env, HF_HUB_CACHE: undefined, HF_HOME: home })).toBe(
      join(home, "hub", "models--someone--tiny", "snapshots", COMMIT),
    );
    expect(() => resolveModelDir("someone/other", env)).toThrow(
      /^model "someone\/other" not found: no directory someone\/other, and not in the Hugging Face cache \(.*models--someone--other\); run cats pull someone\/other to download it$/,
    );
    expect(() => resolveModelDir("someone/tiny@v2", env)).toThrow(
      /at revision v2 .*run cats pull someone\/tiny --revision v2 to download it/,
    );
  });

  it("keeps the lookup order: an existing directory, a bare name in weights/ and CATS_MODELS, then org/name in the HF cache", () => {
    const env = envFor(tempCache());
    expect(resolveModelDir(join(MODELS, "stories260K"), env)).toBe(join(MODELS, "stories260K"));
    expect(resolveModelDir("stories260K", { ...env, CATS_MODELS: MODELS })).toMatch(/stories260K$/);
    expect(() => resolveModelDir("no-such-model", env)).toThrow(
      /^model "no-such-model" not found in .*\(set CATS_MODELS or pass a directory\)$/,
    );
    for (const path of ["/no/such/model", "./a/b", "a/b/c", "../x", "a//b"])
      expect(() => resolveModelDir(path, env)).toThrow(new CatsError(`model directory ${path} does not exist`));

    expect(parseRepoId("org/name")).toEqual({ repo: "org/name", revision: "main" });
    expect(parseRepoId("TheBloke/Llama-2-7B.v1_x@refs/pr/1")).toEqual({ repo: "TheBloke/Llama-2-7B.v1_x", revision: "refs/pr/1" });
    for (const bad of [
      "name",
      "/abs/x",
      "./x",
      "a/b/c",
      "org/-x",
      "org/x.",
      "org/a--b",
      "org/a..b",
      "o rg/x",
      "org/x@",
      "org/x@../y",
      "org/x@/y",
    ])
      expect(parseRepoId(bad)).toBeNull();

    expect(hubCacheDir({ HF_HUB_CACHE: "/c", HF_HOME: "/h", HOME: "/home/u" })).toBe("/c");
    expect(hubCacheDir({ HF_HOME: "/h", HOME: "/home/u" })).toBe(join("/h", "hub"));
    expect(hubCacheDir({ XDG_CACHE_HOME: "/x", HOME: "/home/u" })).toBe(join("/x", "huggingface", "hub"));
    expect(hubCacheDir({ HOME: "/home/u" })).toBe(join("/home/u", ".cache", "huggingface", "hub"));
  });

  it("cats pull prints the snapshot directory, and cats generate --model org/name runs the pulled model", async () => {
    const cache = tempCache();
    const r = await cats(["pull", "test-org/stories260K"], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
    expect(r.errors).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(join(cache, "models--test-org--stories260K", "snapshots", COMMIT) + "\n");
    const ref = reference("stories260K");
    const g = await cats(["generate", "--model", "test-org/stories260K", "--max-tokens", "32", "--json", ref.prompt], {
      HF_HUB_CACHE: cache,
    });
    expect(g.errors).toEqual([]);
    expect(JSON.parse(g.stdout).ids).toEqual(ref.greedy_new_ids);
    const bad = await cats(["pull", "not a repo"], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
    expect(bad.status).toBe(1);
    expect(bad.errors).toHaveLength(1);
    expect(bad.errors[0]).toMatch(/^cats: pull: expected .*repository id org\/name.*, got "not a repo"$/);
  });
});
