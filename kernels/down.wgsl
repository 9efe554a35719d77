// The second half of the MLP, added into the residual stream:
//   Y[t][o] += sum_n act[t][n] * W[n][o],
// with W = W_down transposed ([inter][hidden]) so that a neuron's weights are one contiguous row.
// Each lane owns V blocks of 4 outputs (lanes take neighbouring blocks, so together they read a
// contiguous stretch of each row) and loops over the neurons in order; a neuron whose activation
// is zero for every token of the tile is skipped with a uniform branch, so its row is never read:
// that is the CATS saving, in natural row order and with a fixed summation order. Batched passes;
// one token runs down1.wgsl. Consts: WG lanes, V blocks per lane, TM tokens per tile (grid z).
//#include common
//#weights W

struct DownParams {
  rows: u32,        // neurons in this part (rows of W)
  row_offset: u32,  // first neuron of this part in act
  inter: u32,       // act row stride
  cols4: u32,       // output blocks of 4 (padded hidden / 4): W's row stride in blocks
  y_stride: u32,    // Y row stride in floats
  token0: u32,      // first token of the pass's tiles (0: grid z walks them all)
}
@group(0) @binding(0) var<uniform> p: DownParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> act: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<vec4<f32>>;

// The bound part's rows, which a matrix in column slices (sliceblock.wgsl) needs to find a row.
fn slice_rows_W() -> u32 {
  return p.rows;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t0 = p.token0 + wid.z * TM;
  let first = (wid.x + wid.y * nwg.x) * WG * V + lid;
  var blocks: array<u32, V>;
  for (var v = 0u; v < V; v++) {
    blocks[v] = min(first + v * WG, p.cols4 - 1u);
  }
  var a_base: array<u32, TM>;
  for (var t = 0u; t < TM; t++) {
    a_base[t] = min(t0 + t, state.ntok - 1u) * p.inter + p.row_offset;
  }
  var acc: array<array<vec4<f32>, V>, TM>;
  for (var n = 0u; n < p.rows; n++) {
    var a: array<f32, TM>;
    var nonzero = false;
    for (var t = 0u; t < TM; t++) {
      a[t] = act[a_base[t] + n];
      nonzero = nonzero || a[t] != 0.0;
    }
    if (!nonzero) {
      continue;
    }
    for (var v = 0u; v < V; v++) {
      let w = load_W(n, blocks[v], p.cols4);
      for (var t = 0u; t < TM; t++) {
        acc[t][v] += w * a[t];
      }
    }
  }
  for (var t = 0u; t < TM; t++) {
    if (t0 + t >= state.ntok) {
      break;
    }
    for (var v = 0u; v < V; v++) {
      let b = first + v * WG;
      if (b < p.cols4) {
        let at = ((t0 + t) * p.y_stride) / 4u + b;
        Y[at] += acc[t][v];
      }
    }
  }
}
