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
 * `--model` takes a directory or a name, looked up in this order: an existing directory; a bare
 * name in weights/ and then each directory of $CATS_MODELS; an `org/name[@revision]` in the
 * Hugging Face cache (where Python's huggingface_hub and `cats pull` put models).
 */
export function resolveModelDir(model: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const name = model ?? DEFAULT_MODEL;
  if (isDir(name)) return resolve(name);
  const repo = parseRepoId(name);
  if (repo) {
    const snapshot = cachedSnapshot(repo, env);
    if (snapshot) return snapshot;
    throw new CatsError(
      `model "${name}" not found: no such directory, and not in the Hugging Face cache (${repoFolder(repo.repo, env)}); cats pull ${repo.repo}${repo.revision === "main" ? "" : ` --revision ${repo.revision}`} downloads it`,
    );
  }
  const looksLikePath = name.includes("/") || name.includes("\\") || name.startsWith(".");
  if (looksLikePath) throw new CatsError(`model directory ${name} does not exist`);
  const searched = modelSearchPath(env);
  for (const dir of searched) {
    const candidate = join(dir, name);
    if (isDir(candidate)) return resolve(candidate);
  }
  throw new CatsError(`model "${name}" not found in ${searched.join(", ")} (set CATS_MODELS or pass a directory)`);
}
