@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.z * nwg.x;
  let t0 = wid.y * TILE;
  if (row >= p.inter || t0 >= state.ntok) {
    return;
  }
  let base = row * p.cols4;
  let x0 = t0 * p.x_stride4;
  var g = vec4<f32>(0.0);
  var u = vec4<f32>(0.0);
  for (var k = lid; k < p.cols4; k += WG) {
    g += dot_tile(load_w4(base + k), x0, k);
    u += dot_tile(load_w4_b(base + k), x0, k);
  }
  let gs = wg_sum4(lid, g);
  let us = wg_sum4(lid, u);
  if (lid == 0u) {
    store_act(row, t0, gs, us);
  }
}

// Decode: one token, so no tile.
@compute @workgroup_size(WG)
fn main_one(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.z * nwg.x;
  if (row >= p.inter || state.ntok == 0u) {
    return;
  }
  let base = row * p.cols4;
  var gu = vec4<f32>(0.0);
  for (var k = lid; k < p.cols4; k += WG) {
    let x = X[k];
    gu += vec4<f32>(dot(load_w4(base + k), x), dot(load_w4_b(base + k), x), 0.0, 0.0);
  }
  let total = wg_sum4(lid, gu);
  if (lid == 0u) {
    store_act_one(row, total.x, total.y);
  }
}
