import { CatsError } from "../errors.js";
import { openRegularFile } from "../files.js";
import type { ByteSource } from "./bytesource.js";

/** Opens a file as a ByteSource; reads go straight from disk so a tensor is in memory only while it is uploaded. */
export async function fileSource(path: string): Promise<ByteSource> {
  const { handle, size } = await openRegularFile(path);
  return {
    name: path,
    size,
    async read(offset, length) {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new CatsError(`${path}: file ended at byte ${offset + done} while reading ${length} bytes at ${offset}`);
        done += bytesRead;
      }
      return out;
    },
    async close() {
      await handle.close();
    },
  };
}
