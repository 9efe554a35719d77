// The inner loop of a projection over a tile of TM tokens: for the group's share of the column
// blocks (4 columns each), adds row(rows[r]) . x into acc[r][t] for R rows, and x . x into
// acc[R][t], the sum of squares of a fused RMSNorm (norm.wgsl). Rows whose `on` is false are not
// read at all: that is how CATS skips inactive neurons. Inputs come from input.wgsl.
fn project_$M(g: Group, rows: array<u32, R>, on: array<bool, R>, cols4: u32, acc: ptr<function, Sums>) {
  for (var k = g.lane; k < cols4; k += g.count) {
    var x: array<vec4<f32>, TM>;
    for (var t = 0u; t < TM; t++) {
      let raw = X[x_base[t] + k];
      (*acc)[R][t] += raw * raw;
      x[t] = gained(raw, k);
    }
    for (var r = 0u; r < R; r++) {
      if (on[r]) {
        let w = load_$M(rows[r], k, cols4);
        for (var t = 0u; t < TM; t++) {
          (*acc)[r][t] += w * x[t];
        }
      }
    }
  }
}
