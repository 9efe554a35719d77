// Template: weight matrix $W stored as f16, read as packed u32s in blocks of 8 columns (a
// vec4<u32>): one-token kernels, where fewer, larger reads per column pay.
@group(0) @binding($BINDING) var<storage, read> $W: array<vec4<u32>>;

// The shared-input loop (project1.wgsl, XS) reads a clamped block past the last one rather than
// branching round the read: f16 in row blocks 1.09x on lavapipe at 4096x4096; f32 0.89x.
const CLAMP8_$W = true;

// u32 words in a block of 8 columns.
const WORDS8_$W = 4u;

fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let q = $W[at8_$W(row, k, cols8)];
  return mat2x4<f32>(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}
