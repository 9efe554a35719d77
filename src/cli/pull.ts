import { Presets, SingleBar } from "cli-progress";
import { CatsError } from "../errors.js";
import { parseRepoId } from "../hub/cache.js";
import { pullModel } from "../hub/pull.js";

/** `cats pull org/name [--revision R]`: into the Hugging Face cache, one progress bar per file; prints the snapshot directory. */
export async function runPull(repo: string, flags: { revision?: string }): Promise<void> {
  const ref = parseRepoId(repo);
  if (!ref || repo.includes("@")) throw new CatsError(`pull: expected a repository id org/name, got "${repo}"`);
  let bar: SingleBar | null = null;
  try {
    const dir = await pullModel(
      { repo: ref.repo, revision: flags.revision ?? "main" },
      {
        progress: {
          start: (file, size, resumedFrom) => {
            const name = resumedFrom > 0 ? `${file} (resumed)` : file;
            bar = new SingleBar({ format: `${name} [{bar}] {value}/{total} bytes`, stream: process.stderr }, Presets.shades_classic);
            bar.start(size, resumedFrom);
          },
          advance: (bytes) => bar?.increment(bytes),
          done: () => {
            bar?.stop();
            bar = null;
          },
        },
      },
    );
    process.stdout.write(dir + "\n");
  } finally {
    (bar as SingleBar | null)?.stop();
  }
}
