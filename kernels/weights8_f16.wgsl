// Template: weight matrix $W stored as f16, read as packed u32s in blocks of 8 columns (a
// vec4<u32>): one-token kernels, where fewer, larger reads per column pay.
@group(0) @binding($BINDING) var<storage, read> $W: array<vec4<u32>>;

// u32 words in a block of 8 columns.
const WORDS8_$W = 4u;

fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let q = $W[at8_$W(row, k, cols8)];
  return mat2x4<f32>(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}
