import { existsSync, statSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CatsError } from "../errors.js";
import { cachedSnapshot, parseRepoId, repoFolder } from "../hub/cache.js";

export const DEFAULT_MODEL = "stories260K";

/** The project root: the nearest ancestor of this module with a package.json (works from src/ and dist/src/). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("cats: cannot find the project root");
    dir = up;
  }
  return dir;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Directories searched for model names: weights/ first, then each entry of CATS_MODELS. */
export function modelSearchPath(env: NodeJS.ProcessEnv = process.env): string[] {
  const extra = (env.CATS_MODELS ?? "").split(delimiter).filter((p) => p.length > 0);
  return [join(projectRoot(), "weights"), ...extra];
}

/**
 * `--model` takes a directory or a name, looked up in this order:
 * 1. an existing directory (relative or absolute path) wins;
 * 2. a bare name (no `/`, `\\`, leading `.`) in weights/ and then each directory of $CATS_MODELS;
 * 3. a Hugging Face repository id `org/name[@revision]` (exactly one slash, the hub's id characters)
 *    in the Hugging Face cache, where Python's huggingface_hub and `cats pull` put models;
 * otherwise an error: for a path, that the directory does not exist; for a name, where it was
 * searched; for a repository id, the cache folder looked in and the `cats pull` that downloads it.
 */
export function resolveModelDir(model: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const name = model ?? DEFAULT_MODEL;
  if (isDir(name)) return resolve(name);
  const looksLikePath = name.includes("/") || name.includes("\\") || name.startsWith(".");
  if (!looksLikePath) {
    const searched = modelSearchPath(env);
    for (const dir of searched) {
      const candidate = join(dir, name);
      if (isDir(candidate)) return resolve(candidate);
    }
    throw new CatsError(`model "${name}" not found in ${searched.join(", ")} (set CATS_MODELS or pass a directory)`);
  }
  const repo = parseRepoId(name);
  if (repo === null) throw new CatsError(`model directory ${name} does not exist`);
  const snapshot = cachedSnapshot(repo, env);
  if (snapshot !== null) return snapshot;
  const at = repo.revision === "main" ? "" : ` at revision ${repo.revision}`;
  const pull = `cats pull ${repo.repo}${repo.revision === "main" ? "" : ` --revision ${repo.revision}`}`;
  throw new CatsError(
    `model "${name}" not found: no directory ${name}, and not in the Hugging Face cache${at} (${repoFolder(repo.repo, env)}); run ${pull} to download it`,
  );
}
