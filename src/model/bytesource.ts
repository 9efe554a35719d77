/** Random access to the bytes of one file, so the reader works on a Node file handle and on a browser fetch alike. */
export interface ByteSource {
  /** The name used in error messages (a path or a URL). */
  readonly name: string;
  readonly size: number;
  /** Reads exactly `length` bytes at `offset` into a fresh array. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** A ByteSource over bytes already in memory (tests, and browser loads of small files). */
export function memorySource(name: string, bytes: Uint8Array): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    async read(offset, length) {
      if (offset + length > bytes.byteLength) throw new RangeError(`${name}: read past end`);
      return bytes.slice(offset, offset + length);
    },
    async close() {},
  };
}
