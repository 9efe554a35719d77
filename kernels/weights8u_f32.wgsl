// Template: weight matrix $W stored as f32 and bound as a uniform array of $W_VEC4S vec4s (it must
// fit the adapter's uniform binding, 64 KiB on most), read in blocks of 8 columns. On CPU drivers a
// uniform array indexed per lane costs less than a storage read, which is bounds-checked per lane.
@group(0) @binding($BINDING) var<uniform> $W: array<vec4<f32>, $W_VEC4S>;

// No clamped reads past the last block (see weights8_f16.wgsl).
const CLAMP8_$W = false;

fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let i = 2u * at8_$W(row, k, cols8);
  return mat2x4<f32>($W[i], $W[i + 1u]);
}
