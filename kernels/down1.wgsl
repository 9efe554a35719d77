// The down projection with the activations as a uniform array (XU), added into the residual
// stream: x += act W_down, reading W_down transposed ([inter][hidden], a neuron's weights
// contiguous). A dispatch computes a tile of TM tokens (act bound at the tile's first row, token0
// its first token). Each lane owns V blocks of 8 outputs (lanes take neighbouring blocks, so together
// they read a contiguous stretch of a row) and walks the neurons in order, four at a time; a neuron
// whose activation is zero for every token of the tile (every CATS-masked one, in a decode step) is
// skipped, so its row is never read. Natural row order and a fixed summation order: no index list,
// no atomics in the sums. A variant may split a part's neurons into NS ranges (ONE, below) so that
// consecutive workgroups read neighbouring slices of the same rows, may walk every row of its
// range when many are active (WALK, below), and may still load a word of each skipped row (TOUCH,
// below). Consts: WG lanes, V blocks per lane, TM tokens, XN (vec4s of the uniform array).
//#include common
//#weights8 W

struct DownParams {
  rows: u32,        // neurons in this part (rows of W)
  row_offset: u32,  // first neuron of this part
  inter: u32,       // act row stride
  cols4: u32,       // padded hidden / 4: W's row stride in vec4s
  y_stride: u32,
  token0: u32,      // the tile's first token
}
@group(0) @binding(0) var<uniform> p: DownParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<uniform> act: array<vec4<f32>, XN>;
@group(0) @binding(3) var<storage, read_write> Y: array<vec4<f32>>;

// The bound part's rows, which a matrix in column slices (sliceblock.wgsl) needs to find a row.
fn slice_rows_W() -> u32 {
  return p.rows;
}

//#if TOUCH
// u32 words per block of 8 columns.
//#if QUANT
const BLOCK_WORDS = QB_W / 4u;
//#else
const BLOCK_WORDS = WORDS8_W;
//#endif
// A workgroup's WG x V blocks of a row span WG * V * BLOCK_WORDS / 16 cache lines of 64 bytes; each
// lane touches its share of them, at least one (V = 8 at f16 is two lines a lane: with one, half of
// every skipped row's lines went untouched, and those slices' streams broke).
const TOUCH_LINES = max(1u, (V * BLOCK_WORDS + 15u) / 16u);

// One word of block `block` of `row` (TOUCH, below): its value only keeps the load.
fn touch_word(row: u32, block: u32, cols8: u32) -> u32 {
//#if QUANT
  return W[qtat_W(row, block, cols8)];
//#else
  return bitcast<u32>(W[at8_W(row, block, cols8)].x);
//#endif
}

// A word of each of this lane's lines of `row` (blocks from `block0`, the workgroup's first).
fn touch_row(row: u32, block0: u32, lid: u32, cols8: u32) -> u32 {
  var w = 0u;
  for (var i = 0u; i < TOUCH_LINES; i++) {
    let line = lid * TOUCH_LINES + i;
    w ^= touch_word(row, min(block0 + min(line * 16u / BLOCK_WORDS, WG * V - 1u), cols8 - 1u), cols8);
  }
  return w;
}
//#endif
//#if ONE
// The split walk (ONE, one token): grid z is the neuron range. Each workgroup leaves its range's
// sums in `partials`; the last of a column block's NS workgroups to finish (counted in `arrived`,
// reset by it for the next dispatch) adds them to Y in range order, deterministically. That the
// last one sees the others' sums rests on the CPU drivers' atomics being sequentially consistent
// (LLVM seq_cst, as Mesa's llvmpipe emits them), which WGSL does not promise across workgroups:
// CPU-tuned variants only.
@group(0) @binding(4) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> arrived: array<atomic<u32>>;
var<workgroup> wg_last: u32;
//#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let cols8 = p.cols4 / 2u;
  let first = (wid.x + wid.y * nwg.x) * WG * V + lid;
  var blocks: array<u32, V>;
  for (var v = 0u; v < V; v++) {
    blocks[v] = min(first + v * WG, cols8 - 1u);
  }
  var start = p.row_offset;
  var end = p.row_offset + p.rows;
//#if ONE
  // NS ranges of whole 4-neuron groups, in order.
  let per = max(4u, (p.rows + NS * 4u - 1u) / (NS * 4u) * 4u);
  start = min(end, p.row_offset + wid.z * per);
  end = min(end, start + per);
//#endif
  let inter4 = p.inter / 4u;
//#if WALK
  // Skipped rows leave the walk scattered, and on CPU drivers a scattered row costs about twice a
  // row of the dense walk, which the prefetchers follow; so where a CATS mask keeps at least WALK_PERMILLE
  // of this range's neurons (estimated from every fourth block of four; one token), every row is
  // read and a masked neuron adds its weights times zero: the same sums, at the dense walk's speed.
  var seen = 0u;
  var kept = 0u;
  for (var q = start / 4u; q * 4u < end; q += 4u) {
    kept += dot(select(vec4<u32>(0u), vec4<u32>(1u), act[q] != vec4<f32>(0.0)), vec4<u32>(1u));
    seen += 4u;
  }
  let walk_all = kept * 1000u >= seen * WALK_PERMILLE;
//#else
  let walk_all = false;
//#endif
  var acc: array<array<mat2x4<f32>, TM>, V>;
//#if TOUCH
  // A skipped row still has one word of each cache line of its slice loaded (each lane its share,
  // touch_row), so that the walk stays one stream the prefetcher
  // follows: with W in column slices (f16s, f32s, q{bits}sg{G}) a workgroup's walk is contiguous,
  // and skipping rows' slices at random turns it into scattered reads, which cost about twice the
  // dense walk on CPU drivers. The arithmetic and most loads are skipped, the stream is kept.
  var touched = 0u;
  let block0 = first - lid;
//#endif
//#if QUANT
  // Quantized W (weights8_qt.wgsl): a neuron's weights in column o are s_o * code + o_o with s, o
  // shared by a group of neurons, so sum codes * act and act over the group's active neurons and
  // scale once: a code costs an AND (read in place, qtplace_at_W), a convert and a multiply-add, the
  // scales a read per group. A range of
  // neurons may start or end inside a group (per-row q8 has one group of all the neurons): each
  // group's part of the range is summed and scaled on its own.
  for (var gi = (start - p.row_offset) / QG_W; p.row_offset + gi * QG_W < end; gi++) {
    let n0 = max(start, p.row_offset + gi * QG_W);
    let n1 = min(end, p.row_offset + (gi + 1u) * QG_W);
    // Explicitly zeroed: each group starts its sums afresh.
    var qacc: array<array<mat2x4<f32>, TM>, V>;
    var asum: array<f32, TM>;
    for (var t = 0u; t < TM; t++) {
      asum[t] = 0.0;
      for (var v = 0u; v < V; v++) {
        qacc[v][t] = mat2x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0));
      }
    }
    var any_in_group = false;
    for (var q = n0 / 4u; q * 4u < n1; q++) {
      var a4: array<vec4<f32>, TM>;
      var any_active = false;
      for (var t = 0u; t < TM; t++) {
        a4[t] = act[t * inter4 + q];
        any_active = any_active || any(a4[t] != vec4<f32>(0.0));
      }
      if (!walk_all && !any_active) {
//#if TOUCH
        for (var j = 0u; j < 4u; j++) {
          touched ^= touch_row(clamp(q * 4u + j, n0, n1 - 1u) - p.row_offset, block0, lid, cols8);
        }
//#endif
        continue;
      }
      for (var j = 0u; j < 4u; j++) {
        let n = q * 4u + j;
        var nonzero = false;
        for (var t = 0u; t < TM; t++) {
          nonzero = nonzero || a4[t][j] != 0.0;
        }
        if ((!walk_all && !nonzero) || n < n0 || n >= n1) {
//#if TOUCH
          if (n >= n0 && n < n1) {
            touched ^= touch_row(n - p.row_offset, block0, lid, cols8);
          }
//#endif
          continue;
        }
        any_in_group = true;
        for (var t = 0u; t < TM; t++) {
          asum[t] += a4[t][j];
        }
        for (var v = 0u; v < V; v++) {
          let c = qtplace_at_W(qtat_W(n - p.row_offset, blocks[v], cols8));
          for (var t = 0u; t < TM; t++) {
            qacc[v][t] += c * a4[t][j];
          }
        }
      }
    }
    if (any_in_group) {
      for (var v = 0u; v < V; v++) {
        let so = qtscale_W(gi, blocks[v], cols8);
        let u = qtunplace_W();
        for (var t = 0u; t < TM; t++) {
          acc[v][t] += mat2x4<f32>(qacc[v][t][0] * (so[0] * u[0]) + so[2] * asum[t], qacc[v][t][1] * (so[1] * u[1]) + so[3] * asum[t]);
        }
      }
    }
  }
//#else
  for (var q = start / 4u; q * 4u < end; q++) {
    var a4: array<vec4<f32>, TM>;
    var any_active = false;
    for (var t = 0u; t < TM; t++) {
      a4[t] = act[t * inter4 + q];
      any_active = any_active || any(a4[t] != vec4<f32>(0.0));
    }
    if (!walk_all && !any_active) {
//#if TOUCH
      for (var j = 0u; j < 4u; j++) {
        touched ^= touch_row(clamp(q * 4u + j, start, end - 1u) - p.row_offset, block0, lid, cols8);
      }
//#endif
      continue;
    }
    for (var j = 0u; j < 4u; j++) {
      let n = q * 4u + j;
      var nonzero = false;
      for (var t = 0u; t < TM; t++) {
        nonzero = nonzero || a4[t][j] != 0.0;
      }
      if ((!walk_all && !nonzero) || n < start || n >= end) {
//#if TOUCH
        if (n >= start && n < end) {
          touched ^= touch_row(n - p.row_offset, block0, lid, cols8);
        }
//#endif
        continue;
      }
      for (var v = 0u; v < V; v++) {
        let w = load8_W(n - p.row_offset, blocks[v], cols8);
        for (var t = 0u; t < TM; t++) {
          acc[v][t] += w * a4[t][j];
        }
      }
    }
  }
//#endif
//#if TOUCH
  // Never true (no part has that many rows); it keeps the loads above.
  if (touched == 0x9e3779b9u && p.rows == 0xffffffffu) {
    Y[0] = vec4<f32>(0.0);
  }
//#endif
//#if ONE
  // One token (TM is 1): this range's sums, then the last arrival adds every range's in order.
  let slot = wid.x + wid.y * nwg.x;
  for (var v = 0u; v < V; v++) {
    let b = first + v * WG;
    if (b < cols8) {
      partials[2u * (wid.z * cols8 + b)] = acc[v][0][0];
      partials[2u * (wid.z * cols8 + b) + 1u] = acc[v][0][1];
    }
  }
  storageBarrier();
  if (lid == 0u) {
    wg_last = select(0u, 1u, atomicAdd(&arrived[slot], 1u) == NS - 1u);
  }
  if (workgroupUniformLoad(&wg_last) == 0u) {
    return;
  }
  if (lid == 0u) {
    atomicStore(&arrived[slot], 0u);
  }
  if (p.token0 >= state.ntok) {
    return;
  }
  let ranges = (p.rows + per - 1u) / per;
  let row = p.token0 * p.y_stride / 4u;
  for (var v = 0u; v < V; v++) {
    let b = first + v * WG;
    if (b < cols8) {
      var y0 = Y[row + 2u * b];
      var y1 = Y[row + 2u * b + 1u];
      for (var r = 0u; r < ranges; r++) {
        y0 += partials[2u * (r * cols8 + b)];
        y1 += partials[2u * (r * cols8 + b) + 1u];
      }
      Y[row + 2u * b] = y0;
      Y[row + 2u * b + 1u] = y1;
    }
  }
//#else
  for (var t = 0u; t < TM; t++) {
    if (p.token0 + t >= state.ntok) {
      break;
    }
    let row = (p.token0 + t) * p.y_stride / 4u;
    for (var v = 0u; v < V; v++) {
      let b = first + v * WG;
      if (b < cols8) {
        Y[row + 2u * b] += acc[v][t][0];
        Y[row + 2u * b + 1u] += acc[v][t][1];
      }
    }
  }
//#endif
}
