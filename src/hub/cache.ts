import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** A Hugging Face repository id as `--model` takes it: org/name, optionally @revision. */
const REPO_ID = /^([A-Za-z0-9][\w.-]*)\/([\w.-]+)(?:@([\w./-]+))?$/;
const COMMIT = /^[0-9a-f]{40}$/;

export interface RepoRef {
  repo: string;
  revision: string;
}

/** Parses "org/name[@revision]"; null when the text is not a repository id. */
export function parseRepoId(text: string): RepoRef | null {
  const m = REPO_ID.exec(text);
  if (!m || text.includes("..")) return null;
  return { repo: `${m[1]}/${m[2]}`, revision: m[3] ?? "main" };
}

/** The hub cache directory the Python tools use: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, "hub");
  return join(env.HOME ?? homedir(), ".cache", "huggingface", "hub");
}

/** models--org--name: the repository's folder in the cache. */
export function repoFolder(repo: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(hubCacheDir(env), `models--${repo.replace(/\//g, "--")}`);
}

/**
 * The snapshot directory of a cached repository at a revision: refs/<revision> names the commit
 * (or the revision is a commit hash itself), and snapshots/<commit>/ holds the files, usually as
 * symlinks into blobs/. Null when the cache does not hold it.
 */
export function cachedSnapshot(ref: RepoRef, env: NodeJS.ProcessEnv = process.env): string | null {
  const folder = repoFolder(ref.repo, env);
  let commit: string | null = null;
  const refFile = join(folder, "refs", ref.revision);
  if (existsSync(refFile)) commit = readFileSync(refFile, "utf8").trim();
  else if (COMMIT.test(ref.revision)) commit = ref.revision;
  if (!commit || !COMMIT.test(commit)) return null;
  const dir = join(folder, "snapshots", commit);
  try {
    return statSync(dir).isDirectory() ? dir : null;
  } catch {
    return null;
  }
}
