// Template: a transposed quantized matrix $W (W_down^T: a row per neuron) whose GPTQ groups run
// down the rows: $G consecutive rows share one scale and offset per column. The buffer is the
// groups in order, each as its scales (f32 bits, one per padded column), its offsets (-zero *
// scale), then its rows of $BITS-bit codes in blocks of 8 columns ($BITS / 4 u32s each); the last
// group may hold fewer rows. Read in blocks of 8 columns, dequantized in registers (exact in f32).
@group(0) @binding($BINDING) var<storage, read> $W: array<u32>;

fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let wpb = $BITSu / 4u;
  let row_words = cols8 * wpb;
  let gi = row / $Gu;
  let base = gi * (16u * cols8 + $Gu * row_words);
  let sa = base + 8u * k;
  let oa = sa + 8u * cols8;
  let s0 = vec4<f32>(bitcast<f32>($W[sa]), bitcast<f32>($W[sa + 1u]), bitcast<f32>($W[sa + 2u]), bitcast<f32>($W[sa + 3u]));
  let s1 = vec4<f32>(bitcast<f32>($W[sa + 4u]), bitcast<f32>($W[sa + 5u]), bitcast<f32>($W[sa + 6u]), bitcast<f32>($W[sa + 7u]));
  let o0 = vec4<f32>(bitcast<f32>($W[oa]), bitcast<f32>($W[oa + 1u]), bitcast<f32>($W[oa + 2u]), bitcast<f32>($W[oa + 3u]));
  let o1 = vec4<f32>(bitcast<f32>($W[oa + 4u]), bitcast<f32>($W[oa + 5u]), bitcast<f32>($W[oa + 6u]), bitcast<f32>($W[oa + 7u]));
  let at = base + 16u * cols8 + (row - gi * $Gu) * row_words + k * wpb;
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
  return mat2x4<f32>(vec4<f32>(lo) * s0 + o0, vec4<f32>(hi) * s1 + o1);
}
