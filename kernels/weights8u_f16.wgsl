// Template: weight matrix $W stored as f16 and bound as a uniform array of $W_VEC4S vec4<u32>s (it
// must fit the adapter's uniform binding, 64 KiB on most), read in blocks of 8 columns. On CPU
// drivers a uniform array indexed per lane costs less than a storage read, which is bounds-checked
// per lane.
@group(0) @binding($BINDING) var<uniform> $W: array<vec4<u32>, $W_VEC4S>;

// The branch round each read stays (see weights8_f16.wgsl): the clamped read was measured on
// storage matrices only, and uniform-array ones are too small for it to show.
const CLAMP8_$W = false;

fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let q = $W[at8_$W(row, k, cols8)];
  return mat2x4<f32>(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}
