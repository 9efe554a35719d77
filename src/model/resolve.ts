import { existsSync, statSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CatsError } from "../errors.js";

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
 * `--model` takes a directory or a name. Anything that looks like a path (has a separator or
 * starts with a dot) is a directory; a bare name is looked up in the search path.
 */
export function resolveModelDir(model: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const name = model ?? DEFAULT_MODEL;
  const looksLikePath = name.includes("/") || name.includes("\\") || name.startsWith(".");
  if (looksLikePath || isDir(name)) {
    if (!isDir(name)) throw new CatsError(`model directory ${name} does not exist`);
    return resolve(name);
  }
  const searched = modelSearchPath(env);
  for (const dir of searched) {
    const candidate = join(dir, name);
    if (isDir(candidate)) return resolve(candidate);
  }
  throw new CatsError(`model "${name}" not found in ${searched.join(", ")} (set CATS_MODELS or pass a directory)`);
}
