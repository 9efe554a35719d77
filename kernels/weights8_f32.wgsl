// Template: weight matrix $W stored as f32, read in blocks of 8 columns (two vec4s): one-token
// kernels, where fewer, larger reads per column pay.
@group(0) @binding($BINDING) var<storage, read> $W: array<vec4<f32>>;

// No clamped reads past the last block (see weights8_f16.wgsl): a branch measures faster here.
const CLAMP8_$W = false;

// u32 words in a block of 8 columns.
const WORDS8_$W = 8u;

fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let i = 2u * at8_$W(row, k, cols8);
  return mat2x4<f32>($W[i], $W[i + 1u]);
}
