// The RMSNorm that feeds a projection, fused into it: each lane adds the squares of its share of
// every token's X row (at x_base[t], set by the including kernel) into the sums' extra row R;
// after group_sums, norm_scale gives 1 / sqrt(mean(x^2) + eps). The projection multiplies its sums
// by it, and the gain is applied to the input as it is read.
fn norm_sums(g: Group, cols4: u32, acc: ptr<function, Sums>) {
  for (var k = g.lane; k < cols4; k += g.count) {
    for (var t = 0u; t < TM; t++) {
      let v = X[x_base[t] + k];
      (*acc)[R][t] += v * v;
    }
  }
}

fn norm_scale(acc: ptr<function, Sums>, t: u32, cols: u32, eps: f32) -> f32 {
  return inverseSqrt(hsum((*acc)[R][t]) / f32(cols) + eps);
}
