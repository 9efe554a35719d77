// The inner loop of a projection whose input is a uniform array (XU): as project.wgsl, in blocks of
// 8 columns (fewer, larger weight reads per column). One token accumulates vec4s; a tile of tokens
// accumulates dot products, which keeps R x TM sums in registers.
//#if QUANT
// Quantized rows (qrows.wgsl): a chunk of codes (32 columns at 4 bits, 16 at 8) per load and one
// (scale, offset) per chunk where groups hold whole chunks, dequantized in registers.

// The state of R rows' walk along their chunks: each row's start and its current group's (scale,
// offset), read again only when the group changes.
struct QRows_$M {
  base: array<u32, R>,
  so: array<vec2<f32>, R>,
  g: array<u32, R>,
}

// Adds chunk c of each row that is on, times its inputs xs[t][x0..], into acc.
fn qchunk_$M(c: u32, xs: ptr<function, array<array<vec4<f32>, 8>, TM>>, x0: u32, on: array<bool, R>, q: ptr<function, QRows_$M>, groups: u32, codes0: u32, acc: ptr<function, Sums>) {
  for (var r = 0u; r < R; r++) {
    if (!on[r]) {
      continue;
    }
    let base = (*q).base[r];
    let codes = $M[base + codes0 + c];
    let gc = min(c * QC_$M / QG_$M, groups - 1u);
    if (gc != (*q).g[r]) {
      (*q).g[r] = gc;
      (*q).so[r] = qscale_at_$M(base, gc);
    }
    var so = (*q).so[r];
    for (var j = 0u; j < 4u; j++) {
      if (QG_$M % QC_$M != 0u) {
        so = qscale_at_$M(base, min((c * QC_$M + j * (32u / QB_$M)) / QG_$M, groups - 1u));
      }
      let w = qunpack_$M(codes[j]);
      let w0 = w[0] * so.x + so.y;
      let w1 = w[1] * so.x + so.y;
      for (var t = 0u; t < TM; t++) {
        if (QB_$M == 4u) {
          if (TM == 1u) {
            (*acc)[r][t] += w0 * (*xs)[t][x0 + 2u * j] + w1 * (*xs)[t][x0 + 2u * j + 1u];
          } else {
            (*acc)[r][t].x += dot(w0, (*xs)[t][x0 + 2u * j]) + dot(w1, (*xs)[t][x0 + 2u * j + 1u]);
          }
        } else {
          if (TM == 1u) {
            (*acc)[r][t] += w0 * (*xs)[t][x0 + j];
          } else {
            (*acc)[r][t].x += dot(w0, (*xs)[t][x0 + j]);
          }
        }
      }
    }
  }
}

fn project1_$M(g: Group, rows: array<u32, R>, on: array<bool, R>, cols8: u32, acc: ptr<function, Sums>) {
  let cols4 = cols8 * 2u;
  let chunks = qchunks_$M(cols8);
  let groups = (cols8 * 8u + QG_$M - 1u) / QG_$M;
  let xv = QC_$M / 4u;
  let codes0 = qcodes0_$M(cols8);
  var q: QRows_$M;
  for (var r = 0u; r < R; r++) {
    q.base[r] = qrow_$M(rows[r], cols8);
    q.g[r] = 0xffffffffu;
  }
//#if XS
  // As the float path below: lane l reads vec4 l of every 8 (one chunk at 4 bits, two at 8) and
  // subgroup shuffles pass them round, so each input element is read once per subgroup, not per lane.
  let per = 8u / xv;
  for (var c0 = 0u; c0 < chunks; c0 += per) {
    let at = min(c0 * xv + x_lane, cols4 - 1u);
    var mine: array<vec4<f32>, TM>;
    for (var t = 0u; t < TM; t++) {
      mine[t] = X[x_base[t] + at];
    }
//#if GAIN
    let gm = G[at];
//#endif
    var xs: array<array<vec4<f32>, 8>, TM>;
    for (var i = 0u; i < 8u; i++) {
      let k4 = c0 * xv + i;
//#if GAIN
      let gi = subgroupShuffle(gm, i);
//#endif
      for (var t = 0u; t < TM; t++) {
        var v = subgroupShuffle(mine[t], i);
        if (k4 < cols4) {
          (*acc)[R][t] += v * v;
//#if GAIN
          v *= gi;
//#endif
        } else {
          v = vec4<f32>(0.0);
        }
        xs[t][i] = v;
      }
    }
    for (var cc = 0u; cc < per; cc++) {
      if (c0 + cc < chunks) {
        qchunk_$M(c0 + cc, &xs, cc * xv, on, &q, groups, codes0, acc);
      }
    }
  }
//#else
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
    qchunk_$M(c, &xs, 0u, on, &q, groups, codes0, acc);
  }
//#endif
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
//#if GAIN
    // The norm's gain, which every lane needs too, is shared the same way.
    let gma = G[2u * mine];
    let gmb = G[2u * mine + 1u];
//#endif
    // The shuffle index must unroll to constants: a runtime one is 10x slower on llvmpipe.
    for (var c = 0u; c < 8u; c++) {
      let k = k0 + c;
      var xa: array<vec4<f32>, TM>;
      var xb: array<vec4<f32>, TM>;
//#if GAIN
      let ga = subgroupShuffle(gma, c);
      let gb = subgroupShuffle(gmb, c);
//#endif
      for (var t = 0u; t < TM; t++) {
        let ra = subgroupShuffle(ma[t], c);
        let rb = subgroupShuffle(mb[t], c);
        if (k < cols8) {
          (*acc)[R][t] += ra * ra + rb * rb;
        }
//#if GAIN
        xa[t] = ra * ga;
        xb[t] = rb * gb;
//#else
        xa[t] = ra;
        xb[t] = rb;
//#endif
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
