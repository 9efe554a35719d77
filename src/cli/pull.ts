import { Presets, SingleBar } from "cli-progress";
import { CatsError } from "../errors.js";
import { parseRepoId } from "../hub/cache.js";
import { pullModel } from "../hub/pull.js";
import { quoted } from "../model/describe.js";

/**
 * `cats pull org/name [--revision R]` (or `org/name@R`): downloads what cats needs of the model into
 * the Hugging Face cache, one progress bar per file on stderr, and prints the snapshot directory.
 */
export async function runPull(repo: string, flags: { revision?: string }): Promise<void> {
  const ref = parseRepoId(repo);
  if (ref === null) throw new CatsError(`pull: expected a Hugging Face repository id org/name (or org/name@revision), got ${quoted(repo)}`);
  const named = repo.includes("@");
  if (named && flags.revision !== undefined && flags.revision !== ref.revision)
    throw new CatsError(`pull: two revisions given, @${ref.revision} and --revision ${quoted(flags.revision)}; give one`);
  const revision = named ? ref.revision : (flags.revision ?? "main");
  let bar: SingleBar | null = null;
  try {
    const dir = await pullModel(
      { repo: ref.repo, revision },
      {
        progress: {
          start: (file, size, resumedFrom) => {
            // One bar per file, in turn; a stopped bar stays on its line.
            bar = new SingleBar(
              { format: "{file} [{bar}] {percentage}% {value}/{total} bytes | {eta}s left", stream: process.stderr },
              Presets.shades_classic,
            );
            bar.start(size, resumedFrom, { file: resumedFrom > 0 ? `${file} (resumed)` : file });
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
    (bar as SingleBar | null)?.stop(); // a bar cut short by an error
  }
}
