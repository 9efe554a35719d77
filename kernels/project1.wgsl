// The inner loop of a one-token projection: as project.wgsl, in blocks of 8 columns (fewer,
// larger weight reads per column), with the input row at X[0].
fn project1_$M(g: Group, rows: array<u32, R>, on: array<bool, R>, cols8: u32, acc: ptr<function, Sums>) {
  for (var k = g.lane; k < cols8; k += g.count) {
    let ra = X[2u * k];
    let rb = X[2u * k + 1u];
    (*acc)[R][0] += ra * ra + rb * rb;
    let xa = gained(ra, 2u * k);
    let xb = gained(rb, 2u * k + 1u);
    for (var r = 0u; r < R; r++) {
      if (on[r]) {
        let w = load8_$M(rows[r], k, cols8);
        (*acc)[r][0] += w[0] * xa + w[1] * xb;
      }
    }
  }
}
