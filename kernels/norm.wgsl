// The RMSNorm that feeds a projection, fused into it: the projection loop adds the squares of the
// input into the sums' extra row R (project.wgsl); after group_sums this gives the scale, which
// multiplies the projection's sums. The gain is folded into the weights (or applied by GAIN).
fn rms_scale(acc: ptr<function, Sums>, t: u32, cols: u32, eps: f32) -> f32 {
  return inverseSqrt(hsum((*acc)[R][t]) / f32(cols) + eps);
}
