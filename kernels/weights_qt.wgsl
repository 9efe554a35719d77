// Template: a transposed quantized matrix $W (qtlayout.wgsl), read in blocks of 4 columns (half
// of a block of 8).
@group(0) @binding($BINDING) var<storage, read> $W: array<u32>;

fn load_$W(row: u32, k: u32, cols4: u32) -> vec4<f32> {
  let cols8 = cols4 / 2u;
  let half = k % 2u;
  let gi = row / QG_$W;
  let base = qtbase_$W(gi, cols8);
  let sa = base + 4u * k;
  let oa = sa + 8u * cols8;
  let s = vec4<f32>(bitcast<f32>($W[sa]), bitcast<f32>($W[sa + 1u]), bitcast<f32>($W[sa + 2u]), bitcast<f32>($W[sa + 3u]));
  let o = vec4<f32>(bitcast<f32>($W[oa]), bitcast<f32>($W[oa + 1u]), bitcast<f32>($W[oa + 2u]), bitcast<f32>($W[oa + 3u]));
  let at = qtat_$W(row, k / 2u, cols8);
  var c: vec4<u32>;
  if ($BITSu == 4u) {
    c = (vec4<u32>($W[at]) >> (vec4<u32>(0u, 4u, 8u, 12u) + 16u * half)) & vec4<u32>(15u);
  } else {
    c = (vec4<u32>($W[at + half]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
  }
  return vec4<f32>(c) * s + o;
}
