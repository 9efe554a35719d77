// The inner loop of a projection whose input is a uniform array (XU): as project.wgsl, in blocks of
// 8 columns (fewer, larger weight reads per column). One token accumulates vec4s; a tile of tokens
// accumulates dot products, which keeps R x TM sums in registers.
fn project1_$M(g: Group, rows: array<u32, R>, on: array<bool, R>, cols8: u32, acc: ptr<function, Sums>) {
  for (var k = g.lane; k < cols8; k += g.count) {
    var xa: array<vec4<f32>, TM>;
    var xb: array<vec4<f32>, TM>;
    for (var t = 0u; t < TM; t++) {
      let ra = X[x_base[t] + 2u * k];
      let rb = X[x_base[t] + 2u * k + 1u];
      (*acc)[R][t] += ra * ra + rb * rb;
      xa[t] = gained(ra, 2u * k);
      xb[t] = gained(rb, 2u * k + 1u);
    }
    for (var r = 0u; r < R; r++) {
      if (on[r]) {
        let w = load8_$M(rows[r], k, cols8);
        for (var t = 0u; t < TM; t++) {
          if (TM == 1u) {
            (*acc)[r][t] += w[0] * xa[t] + w[1] * xb[t];
          } else {
            (*acc)[r][t].x += dot(w[0], xa[t]) + dot(w[1], xb[t]);
          }
        }
      }
    }
  }
}
