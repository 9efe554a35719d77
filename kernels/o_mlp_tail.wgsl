// The shared part of o_mlp.wgsl and layer.wgsl: one decode token from the attention output o to the
// next layer's input, in one subgroup of 8 lanes whose vectors are spread over the lanes in blocks
// of 8 (lane l holds blocks l, l + 8, ...):
//   x += o W_o;  h = rmsnorm(x);  act = silu(h W_gate) * (h W_up), CATS-masked;  x += act W_down
// A lane computes the output rows of its own blocks, so each result lies where the next product
// reads it, and subgroup shuffles pass each block round where every lane needs it. The norm's gain
// is folded into W_gate and W_up, or applied from GM (GAIN_MLP). CATS: a neuron whose |silu(gate)| is below the threshold is zero,
// its W_up row is not read (the kept neurons' rows are shared out among the lanes through a list in
// workgroup memory) and its W_down^T row is skipped (every lane walks the same list). The masked path
// is compiled only into a CATS step list's kernel (CATS); its down sums run in list order (lane by
// lane), a dense step's in natural neuron order, both fixed; no atomics but the active count. Needs p
// (o_cols8, h_cols8, hidden, inter, layer, threshold, eps), X and totals, and consts OB, HB, IB
// (blocks of 8 in o, x and act), OM, HM, IM (blocks per lane: ceil(_B / 8)), CATS, UW (the weights as
// uniform arrays, where each fits one binding: cheaper per-lane reads on CPU drivers).
enable subgroups;
diagnostic(off, subgroup_uniformity);
//#if UW
//#weights8u WO WGATE WUP WDOWN
//#else
//#weights8 WO WGATE WUP WDOWN
//#endif
//#if GAIN_MLP
@group(0) @binding(9) var<storage, read> GM: array<vec4<f32>>;
//#endif

alias Block = mat2x4<f32>;

// The kept neurons, listed, their W_up . h, and their activations in list order.
var<workgroup> up_list: array<u32, IB * 8u + 1u>;
var<workgroup> up_out: array<f32, IB * 8u>;
var<workgroup> kept_act: array<f32, IB * 8u + 1u>;

fn zero_block() -> Block {
  return Block(vec4<f32>(0.0), vec4<f32>(0.0));
}

fn dot8(a: Block, b: Block) -> f32 {
  return dot(a[0], b[0]) + dot(a[1], b[1]);
}

// The sums of rows r0 .. r0 + 7 as one block (sums[i] holds row i's partial products), zero past
// the last row, where the padding of a vector must stay zero.
fn block_of(sums: array<vec4<f32>, 8>, r0: u32, rows: u32) -> Block {
  var out = zero_block();
  for (var i = 0u; i < 8u; i++) {
    if (r0 + i < rows) {
      out[i / 4u][i % 4u] = dot(sums[i], vec4<f32>(1.0));
    }
  }
  return out;
}

// The MLP norm's gain on block b of h, where the weights cannot hold it (GAIN_MLP: f16 weights).
fn gained_mlp(v: Block, b: u32) -> Block {
//#if GAIN_MLP
  if (b < HB) {
    return Block(v[0] * GM[2u * b], v[1] * GM[2u * b + 1u]);
  }
//#endif
  return v;
}

// This lane's blocks of the residual stream X.
fn load_x(lane: u32) -> array<Block, HM> {
  var x: array<Block, HM>;
  for (var m = 0u; m < HM; m++) {
    let b = lane + 8u * m;
    x[m] = zero_block();
    if (b < HB) {
      x[m] = Block(X[2u * b], X[2u * b + 1u]);
    }
  }
  return x;
}

fn o_mlp_tail(lane: u32, o: array<Block, OM>, x_in: array<Block, HM>) {
  var x = x_in;
  // x += o W_o: lane l's rows are those of its blocks of x.
  for (var m = 0u; m < HM; m++) {
    let r0 = 8u * (lane + 8u * m);
    var sums: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
      sums[i] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < OM; k0++) {
      for (var s = 0u; s < 8u; s++) {
        let kb = 8u * k0 + s;
        let ob = Block(subgroupShuffle(o[k0][0], s), subgroupShuffle(o[k0][1], s));
        if (kb < OB) {
          for (var i = 0u; i < 8u; i++) {
            let w = load8_WO(min(r0 + i, p.hidden - 1u), kb, p.o_cols8);
            sums[i] += w[0] * ob[0] + w[1] * ob[1];
          }
        }
      }
    }
    x[m] += block_of(sums, r0, p.hidden);
  }

  // h = rmsnorm(x), the gain in the weights.
  var ss = 0.0;
  for (var m = 0u; m < HM; m++) {
    ss += dot8(x[m], x[m]);
  }
  let scale = inverseSqrt(subgroupAdd(ss) / f32(p.hidden) + p.eps);
  var h: array<Block, HM>;
  for (var m = 0u; m < HM; m++) {
    h[m] = gained_mlp(x[m] * scale, lane + 8u * m);
  }

  // g = silu(h W_gate), masked; lane l's neurons are those of its blocks of act. A dense step
  // (every row kept) takes W_up's rows in the same pass, sharing the shuffled blocks of h.
  // CATS: the kernel of a CATS step list; a dense list's kernel has no masked path at all.
  let masked = CATS && p.threshold >= 0.0;
  var a: array<Block, IM>;
  var act: array<Block, IM>;
  var kept: array<u32, IM>;
  var n_active = 0u;
  for (var m = 0u; m < IM; m++) {
    let r0 = 8u * (lane + 8u * m);
    var gsums: array<vec4<f32>, 8>;
    var usums: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
      gsums[i] = vec4<f32>(0.0);
      usums[i] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < HM; k0++) {
      for (var s = 0u; s < 8u; s++) {
        let kb = 8u * k0 + s;
        let hb = Block(subgroupShuffle(h[k0][0], s), subgroupShuffle(h[k0][1], s));
        if (kb < HB) {
          for (var i = 0u; i < 8u; i++) {
            let row = min(r0 + i, p.inter - 1u);
            let w = load8_WGATE(row, kb, p.h_cols8);
            gsums[i] += w[0] * hb[0] + w[1] * hb[1];
            if (!masked) {
              let u = load8_WUP(row, kb, p.h_cols8);
              usums[i] += u[0] * hb[0] + u[1] * hb[1];
            }
          }
        }
      }
    }
    let g = block_of(gsums, r0, p.inter);
    a[m] = zero_block();
    kept[m] = 0u;
    for (var i = 0u; i < 8u; i++) {
      let gi = g[i / 4u][i % 4u];
      let ai = gi / (1.0 + exp(-gi));
      if (!CATS) {
        if (r0 + i < p.inter) {
          a[m][i / 4u][i % 4u] = ai;
        }
        continue;
      }
      // Selects, not branches: at a random half kept, llvmpipe's per-lane branches mispredict.
      let keep = r0 + i < p.inter && (!masked || abs(ai) >= p.threshold);
      a[m][i / 4u][i % 4u] = select(0.0, ai, keep);
      kept[m] |= select(0u, 1u << i, keep);
      n_active += select(0u, 1u, keep);
    }
    let u = block_of(usums, r0, p.inter);
    act[m] = Block(a[m][0] * u[0], a[m][1] * u[1]);
  }
  var listed = 0u;
  if (masked) {
    // W_up . h for the kept neurons only. A lane's own rows would leave it idle where its
    // neighbours' are kept (a SIMD vector runs every lane's branch), so the kept neurons are listed,
    // each lane's after the lanes before it, and shared out: lane l takes entries l, l + 8, ...
    listed = subgroupAdd(n_active);
    if (lane == 0u && listed > 0u) {
      atomicAdd(&totals[p.layer], listed);
    }
    let first = subgroupExclusiveAdd(n_active);
    var at = first;
    // A neuron not kept goes to the spare last entry.
    for (var m = 0u; m < IM; m++) {
      for (var i = 0u; i < 8u; i++) {
        let k = (kept[m] & (1u << i)) != 0u;
        up_list[select(IB * 8u, at, k)] = 8u * (lane + 8u * m) + i;
        at += select(0u, 1u, k);
      }
    }
    workgroupBarrier();
    for (var j0 = 0u; j0 < listed; j0 += 8u) {
      let n = up_list[min(j0 + lane, listed - 1u)];
      var sum = vec4<f32>(0.0);
      for (var k0 = 0u; k0 < HM; k0++) {
        for (var s = 0u; s < 8u; s++) {
          let kb = 8u * k0 + s;
          let hb = Block(subgroupShuffle(h[k0][0], s), subgroupShuffle(h[k0][1], s));
          if (kb < HB) {
            let w = load8_WUP(n, kb, p.h_cols8);
            sum += w[0] * hb[0] + w[1] * hb[1];
          }
        }
      }
      if (j0 + lane < listed) {
        up_out[n] = dot(sum, vec4<f32>(1.0));
      }
    }
    workgroupBarrier();
    at = first;
    for (var m = 0u; m < IM; m++) {
      for (var i = 0u; i < 8u; i++) {
        let k = (kept[m] & (1u << i)) != 0u;
        kept_act[select(IB * 8u, at, k)] = a[m][i / 4u][i % 4u] * up_out[8u * (lane + 8u * m) + i];
        at += select(0u, 1u, k);
      }
    }
    workgroupBarrier();
    // x += act W_down over the kept neurons, in list order: a loop without a branch on each
    // neuron's activation, which a random half of kept neurons would mispredict every other time
    // (at stories260K's size that costs as much as the skipped rows save).
    for (var e = 0u; e < listed; e++) {
      let n = up_list[e];
      let an = kept_act[e];
      for (var m = 0u; m < HM; m++) {
        let b = lane + 8u * m;
        if (b < HB) {
          x[m] += load8_WDOWN(n, b, p.h_cols8) * an;
        }
      }
    }
  } else {
    o_mlp_down_dense(lane, act, &x);
  }

  for (var m = 0u; m < HM; m++) {
    let b = lane + 8u * m;
    if (b < HB) {
      X[2u * b] = x[m][0];
      X[2u * b + 1u] = x[m][1];
    }
  }
}

// x += act W_down, reading W_down^T, for a dense step: every lane walks every neuron in order for its
// own blocks of x.
fn o_mlp_down_dense(lane: u32, act: array<Block, IM>, x: ptr<function, array<Block, HM>>) {
  for (var k0 = 0u; k0 < IM; k0++) {
    for (var s = 0u; s < 8u; s++) {
      let nb = 8u * k0 + s;
      let ab = Block(subgroupShuffle(act[k0][0], s), subgroupShuffle(act[k0][1], s));
      if (nb >= IB) {
        continue;
      }
      for (var j = 0u; j < 8u; j++) {
        let an = ab[j / 4u][j % 4u];
        if (an == 0.0) {
          continue;
        }
        for (var m = 0u; m < HM; m++) {
          let b = lane + 8u * m;
          if (b < HB) {
            (*x)[m] += load8_WDOWN(8u * nb + j, b, p.h_cols8) * an;
          }
        }
      }
    }
  }
}
