import { readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/**
 * One part of a repository id as the hub accepts it (huggingface_hub's validate_repo_id): letters,
 * digits, `_`, `-`, `.`, starting and ending with a letter, digit or `_`, no `--` or `..`, at most 96.
 */
const REPO_PART = /^[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?$/;
/** A branch, tag or commit: `v1.0`, `refs/pr/1`; no `..`, no empty path segment. */
const REVISION = /^[\w.-]+(?:\/[\w.-]+)*$/;
const COMMIT = /^[0-9a-f]{40}$/;

export interface RepoRef {
  /** org/name */
  repo: string;
  /** A branch, tag or commit hash; "main" unless given. */
  revision: string;
}

/** Whether `text` is a revision that can name a file under refs/ (no `..`, no absolute path). */
export function isRevision(text: string): boolean {
  return text.length <= 256 && REVISION.test(text) && !text.split("/").some((s) => s === "." || s === "..");
}

/**
 * Parses "org/name" or "org/name@revision" (exactly one slash before the `@`, valid repository id
 * characters); null when the text is not a repository id, so it can be taken as a name or path.
 */
export function parseRepoId(text: string): RepoRef | null {
  const at = text.indexOf("@");
  const id = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? "main" : text.slice(at + 1);
  const parts = id.split("/");
  if (parts.length !== 2) return null;
  for (const p of parts) if (!REPO_PART.test(p) || p.includes("--") || p.includes("..")) return null;
  if (!isRevision(revision)) return null;
  return { repo: id, revision };
}

function expandHome(path: string, env: NodeJS.ProcessEnv): string {
  return path === "~" || path.startsWith("~/") ? join(env.HOME ?? homedir(), path.slice(1)) : path;
}

/**
 * The hub cache directory, as Python's huggingface_hub finds it: $HF_HUB_CACHE (or its older name
 * $HUGGINGFACE_HUB_CACHE), else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub.
 */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const hub = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (hub) return expandHome(hub, env);
  if (env.HF_HOME) return join(expandHome(env.HF_HOME, env), "hub");
  if (env.XDG_CACHE_HOME) return join(expandHome(env.XDG_CACHE_HOME, env), "huggingface", "hub");
  return join(env.HOME ?? homedir(), ".cache", "huggingface", "hub");
}

/** models--org--name: the repository's folder in the cache. */
export function repoFolder(repo: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(hubCacheDir(env), `models--${repo.replace(/\//g, "--")}`);
}

/**
 * The snapshot directory of a cached repository at a revision: refs/<revision> names the commit
 * (or the revision is a commit hash itself with a folder under snapshots/), and snapshots/<commit>/
 * holds the files, usually as symlinks into blobs/. Null when the cache does not hold it.
 */
export function cachedSnapshot(ref: RepoRef, env: NodeJS.ProcessEnv = process.env): string | null {
  if (!isRevision(ref.revision)) return null;
  const folder = repoFolder(ref.repo, env);
  const refFile = join(folder, "refs", ref.revision);
  let commit: string | null = COMMIT.test(ref.revision) ? ref.revision : null;
  try {
    // Only a small regular file is read (a FIFO would block).
    const st = statSync(refFile);
    if (st.isFile() && st.size <= 1024) commit = readFileSync(refFile, "utf8").trim();
  } catch {
    // No such ref: the revision may be a commit hash.
  }
  if (!commit || !COMMIT.test(commit)) return null;
  const dir = join(folder, "snapshots", commit);
  try {
    return statSync(dir).isDirectory() ? dir : null;
  } catch {
    return null;
  }
}
