// Template: weight matrix $W stored as f16, read as packed u32 pairs so that adapters without
// shader-f16 run it too. A block is 4 consecutive columns of a row (a vec2<u32>).
@group(0) @binding($BINDING) var<storage, read> $W: array<vec2<u32>>;

fn load_$W(row: u32, k: u32, cols4: u32) -> vec4<f32> {
  let q = $W[row * cols4 + k];
  return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
}
