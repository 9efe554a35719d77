import { access, constants, mkdir, open, readdir, realpath, rename, stat, unlink, writeFile, type FileHandle } from "node:fs/promises";
import type { Stats } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { CatsError } from "./errors.js";
import { jsonErrorWhere } from "./model/json.js";

/**
 * Every file cats reads or writes on the user's behalf goes through here, so that a FIFO never
 * blocks open(), a bad output path fails before a long job instead of after it, and a result is
 * never half-written.
 */

function kindOf(s: Stats): string {
  if (s.isFile()) return "a file";
  if (s.isDirectory()) return "a directory";
  if (s.isFIFO()) return "a FIFO";
  if (s.isSocket()) return "a socket";
  if (s.isCharacterDevice()) return "a character device";
  if (s.isBlockDevice()) return "a block device";
  return "not a regular file";
}

/** stat's ENOTDIR: some parent of the path is a file. */
const underAFile = (flag: string, path: string): CatsError => new CatsError(`${flag} ${path}: a parent of it is a file, not a directory`);

const code = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? String(e);

/** Stats `path` (following symlinks) and refuses anything but a regular file, before anything opens it. */
export async function regularFileStats(path: string): Promise<Stats> {
  let s: Stats;
  try {
    s = await stat(path);
  } catch (e) {
    throw new CatsError(`${path}: cannot read (${code(e)})`);
  }
  if (!s.isFile()) throw new CatsError(`${path}: expected a regular file, found ${kindOf(s)}`);
  return s;
}

/** Opens a regular file for reading (never a FIFO or device, which could block forever). */
export async function openRegularFile(path: string): Promise<{ handle: FileHandle; size: number }> {
  await regularFileStats(path);
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new CatsError(`${path}: cannot open (${code(e)})`);
  }
  const s = await handle.stat();
  if (!s.isFile()) {
    await handle.close();
    throw new CatsError(`${path}: expected a regular file, found ${kindOf(s)}`);
  }
  return { handle, size: s.size };
}

/** Reads a regular file as UTF-8 text. */
export async function readTextFile(path: string): Promise<string> {
  const { handle } = await openRegularFile(path);
  try {
    return await handle.readFile("utf8");
  } catch (e) {
    throw new CatsError(`${path}: cannot read (${code(e)})`);
  } finally {
    await handle.close();
  }
}

/**
 * Text as Python's open() reads it by default (universal newlines): \r\n and a lone \r become \n.
 * Evaluation and calibration data go through this so perplexities match Python-based tools.
 */
export function universalNewlines(text: string): string {
  return text.replace(/\r\n?/g, "\n");
}

/** Reads and parses a JSON file; a parse error names the position, never the file's bytes. */
export async function readJsonFile(path: string): Promise<unknown> {
  const text = await readTextFile(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CatsError(`${path}: not valid JSON${jsonErrorWhere(e, text)}`);
  }
}

async function samePath(a: string, b: string): Promise<boolean> {
  const real = async (p: string) => realpath(p).catch(() => resolve(p));
  return (await real(a)) === (await real(b));
}

async function refuseInputs(flag: string, path: string, inputs: readonly string[]): Promise<void> {
  for (const input of inputs) {
    if (await samePath(path, input)) throw new CatsError(`${flag} ${path}: is an input of this command (${input}); choose another path`);
  }
}

async function requireWritableDir(flag: string, path: string, dir: string): Promise<void> {
  let s: Stats;
  try {
    s = await stat(dir);
  } catch (e) {
    throw new CatsError(`${flag} ${path}: directory ${dir} does not exist (${code(e)})`);
  }
  if (!s.isDirectory()) throw new CatsError(`${flag} ${path}: ${dir} is ${kindOf(s)}, not a directory`);
  try {
    await access(dir, constants.W_OK);
  } catch {
    throw new CatsError(`${flag} ${path}: directory ${dir} is not writable`);
  }
}

/**
 * Checks, before the work starts, that `path` can be written as a file: not a directory or other
 * non-regular file, its directory existing and writable, and not one of the command's inputs.
 */
export async function checkOutputFile(flag: string, path: string, inputs: readonly string[] = []): Promise<void> {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new CatsError(`${flag} ${path}: exists and is ${kindOf(s)}; expected a file path`);
  } catch (e) {
    if (e instanceof CatsError) throw e;
    if (code(e) === "ENOTDIR") throw underAFile(flag, path);
    if (code(e) !== "ENOENT") throw new CatsError(`${flag} ${path}: cannot use (${code(e)})`);
  }
  await requireWritableDir(flag, path, dirname(resolve(path)));
  await refuseInputs(flag, path, inputs);
}

/**
 * Makes sure `dir` is a writable directory, creating it and missing parents one level at a time
 * (a recursive mkdir under /proc never returns), before the work starts.
 */
export async function prepareOutputDir(flag: string, dir: string, inputs: readonly string[] = []): Promise<void> {
  await refuseInputs(flag, dir, inputs);
  const missing: string[] = [];
  let at = resolve(dir);
  for (;;) {
    try {
      await stat(at);
      break;
    } catch (e) {
      if (code(e) === "ENOTDIR") throw underAFile(flag, dir);
      if (code(e) !== "ENOENT") throw new CatsError(`${flag} ${dir}: cannot use ${at} (${code(e)})`);
      missing.unshift(at);
      const up = dirname(at);
      if (up === at) break;
      at = up;
    }
  }
  if (missing.length > 0) await requireWritableDir(flag, dir, dirname(missing[0]));
  for (const d of missing) {
    try {
      await mkdir(d);
    } catch (e) {
      throw new CatsError(`${flag} ${dir}: cannot create ${d} (${code(e)})`);
    }
  }
  await requireWritableDir(flag, dir, resolve(dir));
}

/** Writes a file whole or not at all: a temporary file beside it, renamed over it. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw new CatsError(`${path}: cannot write (${code(e)})`);
  }
}

const MODEL_INPUTS = /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|.*\.safetensors(\.index\.json)?)$/;

/** The files of a model directory that commands read: an output must never land on one of them. */
export async function modelInputFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => MODEL_INPUTS.test(n)).map((n) => join(dir, n));
}

/**
 * Writes a large file piece by piece, whole or not at all: `write` fills a temporary file beside
 * `path`, which is renamed over it only when every piece is written.
 */
export async function writeStreamAtomic(path: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const handle = await open(tmp, "w");
  try {
    await write(handle);
    await handle.close();
    await rename(tmp, path);
  } catch (e) {
    await handle.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
