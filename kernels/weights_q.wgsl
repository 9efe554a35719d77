// Template: weight matrix $W quantized to $BITS-bit codes in groups of $G columns, laid out as in
// weights8_q.wgsl, read in blocks of 4 columns (half of a block of 8).
@group(0) @binding($BINDING) var<storage, read> $W: array<u32>;

fn load_$W(row: u32, k: u32, cols4: u32) -> vec4<f32> {
  let cols8 = cols4 / 2u;
  let k8 = k / 2u;
  let half = k % 2u;
  let kpg = $Gu / 8u;
  let wpb = $BITSu / 4u;
  let stride = kpg * wpb + 2u;
  let rem = cols8 % kpg;
  let row_words = (cols8 / kpg) * stride + select(0u, rem * wpb + 2u, rem != 0u);
  let gi = k8 / kpg;
  let base = row * row_words + gi * stride;
  let at_scale = base + min(kpg, cols8 - gi * kpg) * wpb;
  let s = bitcast<f32>($W[at_scale]);
  let o = bitcast<f32>($W[at_scale + 1u]);
  let at = base + (k8 - gi * kpg) * wpb;
  var c: vec4<u32>;
  if ($BITSu == 4u) {
    c = (vec4<u32>($W[at]) >> (vec4<u32>(0u, 4u, 8u, 12u) + 16u * half)) & vec4<u32>(15u);
  } else {
    c = (vec4<u32>($W[at + half]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
  }
  return vec4<f32>(c) * s + o;
}
