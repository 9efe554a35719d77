import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readlink, rename, stat, symlink, unlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { listFiles, modelInfo } from "@huggingface/hub";
import { CatsError } from "../errors.js";
import { bounded, escapeControl, quoted } from "../model/describe.js";
import { isRevision, repoFolder, type RepoRef } from "./cache.js";

/**
 * What cats reads from a model repository, at its top level; everything else (weights in other
 * formats, onnx/, images) is left on the hub.
 */
const WANTED =
  /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|model\.safetensors\.index\.json|[\w.-]+\.safetensors)$/;
const COMMIT = /^[0-9a-f]{40}$/;
/** A blob name: a git blob id (40 hex) or an LFS sha256 (64 hex). */
const BLOB_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

export interface PullProgress {
  /** A file starts: its name, size, and bytes already on disk from an earlier, interrupted pull. */
  start(path: string, size: number, resumedFrom: number): void;
  advance(bytes: number): void;
  /** The file's bytes are all there (called before the checksum is checked). */
  done(): void;
}

export interface PullOptions {
  env?: NodeJS.ProcessEnv;
  progress?: PullProgress;
}

interface RepoFile {
  path: string;
  size: number;
  /** The blob name in the cache, as Python's huggingface_hub names it: the LFS sha256, else the git blob id. */
  etag: string;
  /** The LFS sha256 the hub advertises; null for a file kept in git itself. */
  sha256: string | null;
}

/** The hub: $HF_ENDPOINT, else https://huggingface.co. */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, "");
}

const message = (e: unknown) => bounded(escapeControl(e instanceof Error ? e.message : String(e)), 200);

/** The file's checksum as the hub gives it: sha256 for LFS files, the git blob id (sha1 of "blob N\0" + bytes) otherwise. */
async function checksum(path: string, file: RepoFile): Promise<string> {
  const hash = createHash(file.sha256 !== null ? "sha256" : "sha1");
  if (file.sha256 === null) hash.update(`blob ${file.size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function sizeOf(path: string): Promise<number | null> {
  try {
    const st = await stat(path);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

/** The first byte of a 206 response's Content-Range (`bytes 100-199/200`); null when absent or malformed. */
function rangeStart(res: Response): number | null {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
  return m ? Number(m[1]) : null;
}

/**
 * Downloads one file into blobs/<etag>. Bytes go to blobs/<etag>.incomplete, which an interrupted
 * pull leaves behind and the next one continues with a Range request; the file takes its final name
 * only when its size and checksum (sha256 for LFS files, the git blob id otherwise) match the hub's.
 */
async function downloadBlob(url: string, file: RepoFile, blob: string, token: string | undefined, progress?: PullProgress): Promise<void> {
  if ((await sizeOf(blob)) === file.size) return;
  const partial = `${blob}.incomplete`;
  let have = (await sizeOf(partial)) ?? 0;
  if (have > file.size) {
    await unlink(partial);
    have = 0;
  }
  if (have < file.size) {
    const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
    if (have > 0) headers.Range = `bytes=${have}-`;
    let res: Response;
    try {
      // fetch drops the Authorization header when the hub redirects to another host (its CDN).
      res = await fetch(url, { headers, redirect: "follow" });
    } catch (e) {
      throw new CatsError(`${url}: cannot download ${quoted(file.path)} (${message(e)})`);
    }
    if (res.status === 416 && have > 0) {
      // The partial file does not fit what the server holds now: start it over.
      await res.body?.cancel();
      await unlink(partial);
      return downloadBlob(url, file, blob, token, progress);
    }
    if (res.status === 401 || res.status === 403)
      throw new CatsError(`${url}: HTTP ${res.status}; a gated or private repository needs HF_TOKEN set to a token with access`);
    if (!res.ok || !res.body) throw new CatsError(`${url}: HTTP ${res.status} for ${quoted(file.path)}`);
    // Append only when the server sent exactly the rest; a server that ignores Range (200) or sends
    // another range is answered by starting over.
    const append = res.status === 206 && rangeStart(res) === have;
    if (!append) have = 0;
    progress?.start(file.path, file.size, have);
    const out = createWriteStream(partial, { flags: append ? "a" : "w" });
    const closed = new Promise<void>((resolve, reject) => {
      out.once("close", resolve);
      out.once("error", (e) => reject(new CatsError(`cannot write ${partial}: ${message(e)}`)));
    });
    closed.catch(() => {}); // awaited below; this only keeps an early write error from counting as unhandled
    const reader = res.body.getReader();
    let cut: unknown = null;
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          cut = e;
          break;
        }
        if (chunk.done) break;
        if (have + chunk.value.length > file.size) {
          cut = new Error(`the server sent more than the ${file.size} bytes the listing gave`);
          await reader.cancel().catch(() => {});
          break;
        }
        have += chunk.value.length;
        if (!out.write(chunk.value)) await Promise.race([new Promise<void>((resolve) => out.once("drain", () => resolve())), closed]);
        progress?.advance(chunk.value.length);
      }
    } finally {
      out.end();
      await closed;
    }
    if (cut !== null)
      throw new CatsError(
        `${quoted(file.path)}: the download was cut at byte ${have} of ${file.size} (${message(cut)}); run cats pull again to resume`,
      );
  } else {
    if (file.size === 0) await writeFile(partial, ""); // an empty file needs no request
    progress?.start(file.path, file.size, have);
  }
  progress?.done();
  const got = (await sizeOf(partial)) ?? 0;
  if (got !== file.size) throw new CatsError(`${quoted(file.path)}: got ${got} of ${file.size} bytes; run cats pull again to resume`);
  const sum = await checksum(partial, file);
  if (sum !== file.etag) {
    await unlink(partial);
    const kind = file.sha256 !== null ? "sha256" : "git blob id";
    throw new CatsError(`${quoted(file.path)}: ${kind} ${sum} does not match the hub's ${file.etag}; the download was discarded`);
  }
  await rename(partial, blob);
}

/** snapshots/<commit>/<path> -> ../../blobs/<etag>, relative as Python's huggingface_hub makes it. */
async function linkSnapshot(pointer: string, blob: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  const target = relative(dirname(pointer), blob);
  const current = await readlink(pointer).catch(() => null);
  if (current === target) return;
  // A new link under a temporary name, renamed over the old pointer: the pointer is never missing or dangling.
  const tmp = `${pointer}.${process.pid}.tmp`;
  await unlink(tmp).catch(() => {});
  await symlink(target, tmp);
  await rename(tmp, pointer);
}

/** What the hub lists of a repository at a revision: the commit, and the files cats needs. */
async function listRepository(ref: RepoRef, url: string, token: string | undefined): Promise<{ commit: string; files: RepoFile[] }> {
  const credentials = token ? { accessToken: token } : {};
  const where = `${url}: ${ref.repo}@${ref.revision}`;
  let commit: string;
  const files: RepoFile[] = [];
  try {
    const info = await modelInfo({ name: ref.repo, revision: ref.revision, hubUrl: url, additionalFields: ["sha"], ...credentials });
    commit = typeof info.sha === "string" ? info.sha : "";
    if (!COMMIT.test(commit)) throw new CatsError(`${where}: the hub gave no commit hash (got ${quoted(commit)})`);
    for await (const f of listFiles({ repo: { type: "model", name: ref.repo }, revision: commit, hubUrl: url, ...credentials })) {
      if (f.type !== "file" || !WANTED.test(f.path)) continue;
      const etag = f.lfs?.oid ?? f.oid;
      const size = f.lfs?.size ?? f.size;
      if (typeof etag !== "string" || !BLOB_ID.test(etag) || !Number.isSafeInteger(size) || size < 0)
        throw new CatsError(`${where}: ${quoted(f.path)}: expected a blob id and a size in the listing, got ${quoted(String(etag))}`);
      files.push({ path: f.path, size, etag, sha256: f.lfs ? etag : null });
    }
  } catch (e) {
    if (e instanceof CatsError) throw e;
    const status = (e as { statusCode?: unknown }).statusCode;
    if (status === 401 || status === 403 || status === 404)
      throw new CatsError(
        `${where}: not found, or gated or private (HTTP ${status}); check the name, or set HF_TOKEN to a token with access`,
      );
    throw new CatsError(`${where}: cannot list the repository (${message(e)})`);
  }
  if (!files.some((f) => f.path === "config.json"))
    throw new CatsError(`${where}: no config.json at the top level (is it a model repository?)`);
  if (!files.some((f) => f.path.endsWith(".safetensors")))
    throw new CatsError(`${where}: no .safetensors weights at the top level (cats reads safetensors only)`);
  return { commit, files };
}

/**
 * Downloads the files cats needs of a model repository into the Hugging Face cache layout
 * (blobs/<etag>, snapshots/<commit>/<path> symlinks, refs/<revision>), so Python tools and cats share
 * one copy. refs/<revision> is written last, so an interrupted pull never makes a half-downloaded
 * snapshot the one `--model org/name` finds. Returns the snapshot directory. HF_ENDPOINT names the
 * hub, HF_TOKEN authenticates.
 */
export async function pullModel(ref: RepoRef, o: PullOptions = {}): Promise<string> {
  if (!isRevision(ref.revision)) throw new CatsError(`pull: --revision ${quoted(ref.revision)} is not a branch, tag or commit name`);
  const env = o.env ?? process.env;
  const url = hubEndpoint(env);
  const token = env.HF_TOKEN || undefined;
  const { commit, files } = await listRepository(ref, url, token);
  const folder = repoFolder(ref.repo, env);
  await mkdir(join(folder, "blobs"), { recursive: true });
  for (const f of files) {
    const blob = join(folder, "blobs", f.etag);
    const fileUrl = `${url}/${ref.repo}/resolve/${commit}/${encodeURIComponent(f.path)}`;
    await downloadBlob(fileUrl, f, blob, token, o.progress);
    await linkSnapshot(join(folder, "snapshots", commit, f.path), blob);
  }
  if (ref.revision !== commit) {
    const refFile = join(folder, "refs", ref.revision);
    await mkdir(dirname(refFile), { recursive: true });
    const tmp = `${refFile}.${process.pid}.tmp`;
    await writeFile(tmp, commit);
    await rename(tmp, refFile);
  }
  return join(folder, "snapshots", commit);
}
