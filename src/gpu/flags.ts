/**
 * WebGPU's buffer-usage and map-mode bits (values fixed by the spec). Dawn for Node only defines
 * the GPUBufferUsage globals once it is loaded, so modules use these instead.
 */
export const Usage = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;

export const MAP_READ = 0x1;
