@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  let t0 = gid.y * TILE;
  if (row >= p.inter || t0 >= state.ntok) {
    return;
  }
  let base = row * p.cols4;
  let x0 = t0 * p.x_stride4;
  var g = vec4<f32>(0.0);
  var u = vec4<f32>(0.0);
  for (var k = 0u; k < p.cols4; k++) {
    g += dot_tile(load_w4(base + k), x0, k);
    u += dot_tile(load_w4_b(base + k), x0, k);
  }
  store_act(row, t0, g, u);
}

// Decode: one token, so no tile.
@compute @workgroup_size(64)
fn main_one(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= p.inter || state.ntok == 0u) {
    return;
  }
  let base = row * p.cols4;
  var g = 0.0;
  var u = 0.0;
  for (var k = 0u; k < p.cols4; k++) {
    let x = X[k];
    g += dot(load_w4(base + k), x);
    u += dot(load_w4_b(base + k), x);
  }
  store_act_one(row, g, u);
}
