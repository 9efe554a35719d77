// Template: weight matrix $W quantized to $BITS-bit codes in groups of $G columns (GPTQ's groups
// along a row's inputs). A row is its groups in order, each as blocks of 8 codes ($BITS / 4 u32s,
// lowest column in the lowest bits) followed by the group's scale and offset (f32 bits, offset =
// -zero * scale); the last group of a row may hold fewer blocks. Read in blocks of 8 columns and
// dequantized in registers: code * scale + offset is exact in f32 (an f16 scale times a 9-bit integer).
@group(0) @binding($BINDING) var<storage, read> $W: array<u32>;

fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let kpg = $Gu / 8u;
  let wpb = $BITSu / 4u;
  let stride = kpg * wpb + 2u;
  let rem = cols8 % kpg;
  let row_words = (cols8 / kpg) * stride + select(0u, rem * wpb + 2u, rem != 0u);
  let gi = k / kpg;
  let base = row * row_words + gi * stride;
  let at_scale = base + min(kpg, cols8 - gi * kpg) * wpb;
  let s = bitcast<f32>($W[at_scale]);
  let o = bitcast<f32>($W[at_scale + 1u]);
  let at = base + (k - gi * kpg) * wpb;
  var lo: vec4<u32>;
  var hi: vec4<u32>;
  if ($BITSu == 4u) {
    let w = vec4<u32>($W[at]);
    lo = (w >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    hi = (w >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u);
  } else {
    lo = (vec4<u32>($W[at]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    hi = (vec4<u32>($W[at + 1u]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
  }
  return mat2x4<f32>(vec4<f32>(lo) * s + o, vec4<f32>(hi) * s + o);
}
