// One workgroup per output row: its invocations stride over the row with coalesced loads and
// reduce in workgroup memory, the layout real GPUs are fast at.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.z * nwg.x;
  let t0 = wid.y * TILE;
  if (row >= p.rows || t0 >= token_count()) {
    return;
  }
  let wbase = (row + p.row_offset) * p.cols4;
  let s = p.x_stride4;
  let x0 = t0 * s;
  var acc = vec4<f32>(0.0);
  for (var k = lid; k < p.cols4; k += WG) {
    let w = load_w4(wbase + k);
    acc += vec4<f32>(dot(w, X[x0 + k]), dot(w, X[x0 + s + k]), dot(w, X[x0 + 2u * s + k]), dot(w, X[x0 + 3u * s + k]));
  }
  let total = wg_sum4(lid, acc);
  if (lid == 0u) {
    store_tile(row, t0, total);
  }
}

// Decode: one token, so no tile.
@compute @workgroup_size(WG)
fn main_one(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.z * nwg.x;
  if (row >= p.rows || state.ntok == 0u) {
    return;
  }
  let wbase = (row + p.row_offset) * p.cols4;
  var acc = 0.0;
  for (var k = lid; k < p.cols4; k += WG) {
    acc += dot(load_w4(wbase + k), X[k]);
  }
  let total = wg_sum(lid, acc);
  if (lid == 0u) {
    store_one(row, total);
  }
}
