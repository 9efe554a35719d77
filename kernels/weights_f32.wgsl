// Template: weight matrix $W stored as f32, rows padded to whole blocks of 8 columns, read in
// blocks of 4 columns (a vec4).
@group(0) @binding($BINDING) var<storage, read> $W: array<vec4<f32>>;

fn load_$W(row: u32, k: u32, cols4: u32) -> vec4<f32> {
  return $W[at4_$W(row, k, cols4)];
}
