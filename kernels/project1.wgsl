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

// Where groups hold whole chunks (every format cats writes), a code is not dequantized one by one:
// code q at position p of its u32 is read in place as the integer (q << 4p) (an AND, no shift, for
// the lower seven nibbles or three bytes), whose f32 times an input pre-scaled by 2^-4p (2^-8p at 8
// bits) is exactly q * x; a chunk's products then take its scale once and its offset once, against
// the inputs' sum: sum((q s + o) x) = s sum(q x) + o sum(x). About 3 instead of 5 operations a
// weight, where the unpacking bounds a quantized product on CPU drivers.
const QFAST_$M = QG_$M % QC_$M == 0u && TM == 1u;

// The pre-scale of input vec4 i of a chunk: 4 codes per vec4 at 8 bits, 8 per u32 at 4 bits.
fn qfactor_$M(i: u32) -> vec4<f32> {
  if (!QFAST_$M) {
    return vec4<f32>(1.0);
  }
  if (QB_$M == 8u) {
    return vec4<f32>(1.0, 0x1p-8f, 0x1p-16f, 0x1p-16f);
  }
  return select(vec4<f32>(0x1p-16f, 0x1p-20f, 0x1p-24f, 0x1p-24f), vec4<f32>(1.0, 0x1p-4f, 0x1p-8f, 0x1p-12f), i % 2u == 0u);
}

// One u32 of codes in place (see QFAST): the first vec4 at 8 bits, both at 4.
fn qplace_$M(w: u32) -> mat2x4<f32> {
  let v = vec4<u32>(w);
  if (QB_$M == 8u) {
    let b = (v & vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xff000000u)) >> vec4<u32>(0u, 0u, 0u, 8u);
    return mat2x4<f32>(vec4<f32>(bitcast<vec4<i32>>(b)), vec4<f32>(0.0));
  }
  let lo = v & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u);
  let hi = (v & vec4<u32>(0xf0000u, 0xf00000u, 0xf000000u, 0xf0000000u)) >> vec4<u32>(0u, 0u, 0u, 4u);
  return mat2x4<f32>(vec4<f32>(bitcast<vec4<i32>>(lo)), vec4<f32>(bitcast<vec4<i32>>(hi)));
}

// Adds chunk c of each row that is on, times its inputs xs[t][x0..] (pre-scaled under QFAST, whose
// sums are xsum[t][xi]), into acc.
fn qchunk_$M(c: u32, xs: ptr<function, array<array<vec4<f32>, 8>, TM>>, x0: u32, xsum: ptr<function, array<array<vec4<f32>, 2>, TM>>, xi: u32, on: array<bool, R>, q: ptr<function, QRows_$M>, groups: u32, codes0: u32, acc: ptr<function, Sums>) {
  for (var r = 0u; r < R; r++) {
    if (!on[r]) {
      continue;
    }
    let base = (*q).base[r];
    let codes = $M[base + (codes0 + c) * QRS_$M];
    let gc = min(c * QC_$M / QG_$M, groups - 1u);
    if (gc != (*q).g[r]) {
      (*q).g[r] = gc;
      (*q).so[r] = qscale_at_$M(base, gc);
    }
    var so = (*q).so[r];
    if (QFAST_$M) {
      // Initialized explicitly: a var declared in a loop without one kept its last value (Dawn, lavapipe).
      var part = array<vec4<f32>, TM>();
      for (var j = 0u; j < 4u; j++) {
        let w = qplace_$M(codes[j]);
        for (var t = 0u; t < TM; t++) {
          if (QB_$M == 4u) {
            part[t] += w[0] * (*xs)[t][x0 + 2u * j] + w[1] * (*xs)[t][x0 + 2u * j + 1u];
          } else {
            part[t] += w[0] * (*xs)[t][x0 + j];
          }
        }
      }
      for (var t = 0u; t < TM; t++) {
        (*acc)[r][t] += so.x * part[t] + so.y * (*xsum)[t][xi];
      }
      continue;
    }
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
    let inside = c0 * xv + x_lane < cols4;
//#if GAIN
    let gm = G[at];
//#endif
    // Each lane squares and scales its own vec4 (see mine_squares) before the shuffles pass it
    // round; zero past the last column, so that no clamped duplicate is passed on.
    var mine: array<vec4<f32>, TM>;
    for (var t = 0u; t < TM; t++) {
      let raw = select(vec4<f32>(0.0), X[x_base[t] + at], inside);
      (*acc)[R][t] += raw * raw;
//#if GAIN
      mine[t] = raw * gm;
//#else
      mine[t] = raw;
//#endif
    }
    var xs: array<array<vec4<f32>, 8>, TM>;
    var xsum = array<array<vec4<f32>, 2>, TM>();
    for (var i = 0u; i < 8u; i++) {
      for (var t = 0u; t < TM; t++) {
        let v = subgroupShuffle(mine[t], i);
        if (QFAST_$M) {
          xsum[t][i / xv] += v;
        }
        xs[t][i] = v * qfactor_$M(i);
      }
    }
    for (var cc = 0u; cc < per; cc++) {
      if (c0 + cc < chunks) {
        qchunk_$M(c0 + cc, &xs, cc * xv, &xsum, cc, on, &q, groups, codes0, acc);
      }
    }
  }
  mine_squares(acc);
//#else
  for (var c = g.lane; c < chunks; c += g.count) {
    var xs: array<array<vec4<f32>, 8>, TM>;
    var xsum = array<array<vec4<f32>, 2>, TM>();
    for (var t = 0u; t < TM; t++) {
      for (var j = 0u; j < xv; j++) {
        let k4 = c * xv + j;
        var v = vec4<f32>(0.0);
        if (k4 < cols4) {
          v = X[x_base[t] + k4];
          (*acc)[R][t] += v * v;
          v = gained(v, k4);
        }
        if (QFAST_$M) {
          xsum[t][0] += v;
        }
        xs[t][j] = v * qfactor_$M(j);
      }
    }
    qchunk_$M(c, &xs, 0u, &xsum, 0u, on, &q, groups, codes0, acc);
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
    let inside = k0 + x_lane < cols8;
//#if GAIN
    // The norm's gain, which every lane needs too, is applied by the lane that read the block.
    let gma = G[2u * mine];
    let gmb = G[2u * mine + 1u];
//#endif
    // Each lane squares and scales its own block (see mine_squares) before the shuffles pass it round.
    var ma: array<vec4<f32>, TM>;
    var mb: array<vec4<f32>, TM>;
    for (var t = 0u; t < TM; t++) {
      let ra = select(vec4<f32>(0.0), X[x_base[t] + 2u * mine], inside);
      let rb = select(vec4<f32>(0.0), X[x_base[t] + 2u * mine + 1u], inside);
      (*acc)[R][t] += ra * ra + rb * rb;
//#if GAIN
      ma[t] = ra * gma;
      mb[t] = rb * gmb;
//#else
      ma[t] = ra;
      mb[t] = rb;
//#endif
    }
    // The shuffle index must unroll to constants: a runtime one is 10x slower on llvmpipe.
    for (var c = 0u; c < 8u; c++) {
      let k = k0 + c;
      var xa: array<vec4<f32>, TM>;
      var xb: array<vec4<f32>, TM>;
      for (var t = 0u; t < TM; t++) {
        xa[t] = subgroupShuffle(ma[t], c);
        xb[t] = subgroupShuffle(mb[t], c);
      }
      // Past the last block the shuffled inputs are zero (see ma, mb above), so where the format
      // asks for it (CLAMP8) a clamped block adds nothing and the loads need no branch round them.
      let kc = select(k, min(k, cols8 - 1u), CLAMP8_$M);
      for (var r = 0u; r < R; r++) {
        if (on[r] && (CLAMP8_$M || k < cols8)) {
          let w = load8_$M(rows[r], kc, cols8);
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
  mine_squares(acc);
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
