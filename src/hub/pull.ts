import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readlink, rename, stat, symlink, unlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { listFiles, modelInfo } from "@huggingface/hub";
import { CatsError } from "../errors.js";
import { repoFolder, type RepoRef } from "./cache.js";

/** What cats reads from a model repository; everything else (weights in other formats, images) is left. */
const WANTED =
  /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|model\.safetensors\.index\.json|[^/]*\.safetensors)$/;

export interface PullProgress {
  /** A file starts: its name, size, and bytes already on disk from an earlier, interrupted pull. */
  start(path: string, size: number, resumedFrom: number): void;
  advance(bytes: number): void;
  done(): void;
}

export interface PullOptions {
  env?: NodeJS.ProcessEnv;
  progress?: PullProgress;
}

interface RepoFile {
  path: string;
  size: number;
  /** The blob name in the cache: the LFS sha256 for LFS files, the git blob id otherwise. */
  etag: string;
  sha256: string | null;
}

const hubUrl = (env: NodeJS.ProcessEnv) => (env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/$/, "");

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function sizeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}

/**
 * Downloads one file into blobs/<etag>, resuming a `.incomplete` file left by an interrupted
 * pull with a Range request, and checking an LFS file's sha256 before it takes its final name.
 */
async function downloadBlob(url: string, file: RepoFile, blob: string, token: string | undefined, progress?: PullProgress): Promise<void> {
  if ((await sizeOf(blob)) === file.size) return;
  const partial = `${blob}.incomplete`;
  let have = (await sizeOf(partial)) ?? 0;
  if (have > file.size) {
    await unlink(partial);
    have = 0;
  }
  progress?.start(file.path, file.size, have);
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  if (have > 0 && have < file.size) headers.Range = `bytes=${have}-`;
  if (have < file.size) {
    let res: Response;
    try {
      res = await fetch(url, { headers, redirect: "follow" });
    } catch (e) {
      throw new CatsError(`${url}: cannot download (${(e as Error).message})`);
    }
    if (!res.ok || !res.body) throw new CatsError(`${url}: HTTP ${res.status}`);
    // A server that ignores Range sends the whole file: start over.
    const append = res.status === 206;
    if (!append) have = 0;
    const out = createWriteStream(partial, { flags: append ? "a" : "w" });
    const reader = res.body.getReader();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          throw new CatsError(
            `${file.path}: the download was cut at byte ${have} of ${file.size} (${(e as Error).message}); run cats pull again to resume`,
          );
        }
        if (chunk.done) break;
        have += chunk.value.length;
        if (!out.write(chunk.value)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
        progress?.advance(chunk.value.length);
      }
    } finally {
      await new Promise<void>((resolve) => out.end(resolve));
    }
  }
  progress?.done();
  const got = (await sizeOf(partial)) ?? 0;
  if (got !== file.size) throw new CatsError(`${file.path}: got ${got} of ${file.size} bytes; run cats pull again to resume`);
  if (file.sha256 !== null) {
    const sum = await sha256File(partial);
    if (sum !== file.sha256) {
      await unlink(partial);
      throw new CatsError(`${file.path}: sha256 ${sum} does not match the hub's ${file.sha256}; the download was discarded`);
    }
  }
  await rename(partial, blob);
}

/** snapshots/<commit>/<path> -> ../../blobs/<etag>, relative as Python's huggingface_hub makes it. */
async function linkSnapshot(pointer: string, blob: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  const target = relative(dirname(pointer), blob);
  const current = await readlink(pointer).catch(() => null);
  if (current === target) return;
  if (current !== null) await unlink(pointer);
  await symlink(target, pointer);
}

/**
 * Downloads the files cats needs of a model repository into the Hugging Face cache layout
 * (blobs/, snapshots/<commit>/, refs/<revision>), so Python tools and cats share one copy.
 * Returns the snapshot directory. HF_ENDPOINT names the hub, HF_TOKEN authenticates.
 */
export async function pullModel(ref: RepoRef, o: PullOptions = {}): Promise<string> {
  const env = o.env ?? process.env;
  const url = hubUrl(env);
  const token = env.HF_TOKEN || undefined;
  const credentials = token ? { accessToken: token } : {};
  let commit: string;
  const files: RepoFile[] = [];
  try {
    const info = await modelInfo({ name: ref.repo, revision: ref.revision, hubUrl: url, additionalFields: ["sha"], ...credentials });
    commit = (info as { sha?: string }).sha ?? "";
    for await (const f of listFiles({
      repo: { type: "model", name: ref.repo },
      revision: commit || ref.revision,
      recursive: true,
      hubUrl: url,
      ...credentials,
    })) {
      if (f.type !== "file" || !WANTED.test(f.path)) continue;
      files.push({ path: f.path, size: f.lfs?.size ?? f.size, etag: f.lfs?.oid ?? f.oid ?? "", sha256: f.lfs?.oid ?? null });
    }
  } catch (e) {
    if (e instanceof CatsError) throw e;
    throw new CatsError(`${url}: cannot read ${ref.repo}@${ref.revision} (${(e as Error).message})`);
  }
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new CatsError(`${url}: ${ref.repo}@${ref.revision}: the hub gave no commit hash`);
  if (!files.some((f) => f.path === "config.json"))
    throw new CatsError(`${url}: ${ref.repo}@${ref.revision} has no config.json (is it a model repository?)`);
  const folder = repoFolder(ref.repo, env);
  await mkdir(join(folder, "blobs"), { recursive: true });
  for (const f of files) {
    if (!/^[\w.-]+$/.test(f.etag)) throw new CatsError(`${url}: ${f.path}: unexpected blob id ${JSON.stringify(f.etag)}`);
    const blob = join(folder, "blobs", f.etag);
    const fileUrl = `${url}/${ref.repo}/resolve/${commit}/${f.path.split("/").map(encodeURIComponent).join("/")}`;
    await downloadBlob(fileUrl, f, blob, token, o.progress);
    await linkSnapshot(join(folder, "snapshots", commit, f.path), blob);
  }
  if (ref.revision !== commit) {
    await mkdir(join(folder, "refs"), { recursive: true });
    await writeFile(join(folder, "refs", ref.revision), commit);
  }
  return join(folder, "snapshots", commit);
}
