// Template: weight matrix $W stored as f16, rows padded to whole blocks of 8 columns, read as packed
// u32s (adapters without shader-f16 run it too) in blocks of 4 columns (a vec2<u32>).
@group(0) @binding($BINDING) var<storage, read> $W: array<vec2<u32>>;

fn load_$W(row: u32, k: u32, cols4: u32) -> vec4<f32> {
  let q = $W[at4_$W(row, k, cols4)];
  return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
}
