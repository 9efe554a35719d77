// The inner loop of a projection whose input is a uniform array (XU): as project.wgsl, in blocks of
// 8 columns (fewer, larger weight reads per column). One token accumulates vec4s; a tile of tokens
// accumulates dot products, which keeps R x TM sums in registers.
//#if QUANT
// Quantized rows (qrows.wgsl): a chunk of codes (32 columns at 4 bits, 16 at 8) per load and one
// (scale, offset) per chunk where groups hold whole chunks, dequantized in registers.
fn project1_$M(g: Group, rows: array<u32, R>, on: array<bool, R>, cols8: u32, acc: ptr<function, Sums>) {
  let cols4 = cols8 * 2u;
  let chunks = qchunks_$M(cols8);
  let groups = (cols8 * 8u + QG_$M - 1u) / QG_$M;
  let xv = QC_$M / 4u;
  let codes0 = qcodes0_$M(cols8);
  // Each row's start and its current group's (scale, offset): read again only when the group changes.
  var base: array<u32, R>;
  var so_of: array<vec2<f32>, R>;
  var g_of: array<u32, R>;
  for (var r = 0u; r < R; r++) {
    base[r] = qrow_$M(rows[r], cols8);
    g_of[r] = 0xffffffffu;
  }
  for (var c = g.lane; c < chunks; c += g.count) {
    var xs: array<array<vec4<f32>, 8>, TM>;
    for (var t = 0u; t < TM; t++) {
      for (var j = 0u; j < xv; j++) {
        let k4 = c * xv + j;
        var v = vec4<f32>(0.0);
        if (k4 < cols4) {
          v = X[x_base[t] + k4];
          (*acc)[R][t] += v * v;
          v = gained(v, k4);
        }
        xs[t][j] = v;
      }
    }
    for (var r = 0u; r < R; r++) {
      if (!on[r]) {
        continue;
      }
      let q = $M[base[r] + codes0 + c];
      let gc = min(c * QC_$M / QG_$M, groups - 1u);
      if (gc != g_of[r]) {
        g_of[r] = gc;
        so_of[r] = qscale_at_$M(base[r], gc);
      }
      var so = so_of[r];
      for (var j = 0u; j < 4u; j++) {
        if (QG_$M % QC_$M != 0u) {
          so = qscale_at_$M(base[r], min((c * QC_$M + j * (32u / QB_$M)) / QG_$M, groups - 1u));
        }
        let w = qunpack_$M(q[j]);
        let w0 = w[0] * so.x + so.y;
        let w1 = w[1] * so.x + so.y;
        for (var t = 0u; t < TM; t++) {
          if (QB_$M == 4u) {
            if (TM == 1u) {
              (*acc)[r][t] += w0 * xs[t][2u * j] + w1 * xs[t][2u * j + 1u];
            } else {
              (*acc)[r][t].x += dot(w0, xs[t][2u * j]) + dot(w1, xs[t][2u * j + 1u]);
            }
          } else {
            if (TM == 1u) {
              (*acc)[r][t] += w0 * xs[t][j];
            } else {
              (*acc)[r][t].x += dot(w0, xs[t][j]);
            }
          }
        }
      }
    }
  }
}
//#elif XS
// The input is a storage array read once per subgroup of 8 lanes (XS): every lane needs the same
// columns of X, and a CPU driver reads storage lane by lane, so lane l reads block k0 + l of each
// token's row and subgroup shuffles pass the 8 blocks round. Rows variants only (a lane is a group).
fn project1_$M(g: Group, rows: array<u32, R>, on: array<bool, R>, cols8: u32, acc: ptr<function, Sums>) {
  for (var k0 = 0u; k0 < cols8; k0 += 8u) {
    let mine = min(k0 + x_lane, cols8 - 1u);
    var ma: array<vec4<f32>, TM>;
    var mb: array<vec4<f32>, TM>;
    for (var t = 0u; t < TM; t++) {
      ma[t] = X[x_base[t] + 2u * mine];
      mb[t] = X[x_base[t] + 2u * mine + 1u];
    }
    // The shuffle index must unroll to constants: a runtime one is 10x slower on llvmpipe.
    for (var c = 0u; c < 8u; c++) {
      let k = k0 + c;
      var xa: array<vec4<f32>, TM>;
      var xb: array<vec4<f32>, TM>;
      for (var t = 0u; t < TM; t++) {
        let ra = subgroupShuffle(ma[t], c);
        let rb = subgroupShuffle(mb[t], c);
        if (k < cols8) {
          (*acc)[R][t] += ra * ra + rb * rb;
        }
        xa[t] = gained(ra, 2u * k);
        xb[t] = gained(rb, 2u * k + 1u);
      }
      for (var r = 0u; r < R; r++) {
        if (on[r] && k < cols8) {
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
}
//#else
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
//#endif
