// One invocation per output row: no barriers, which CPU Vulkan drivers execute slowly.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  let t0 = gid.y * TILE;
  if (row >= p.rows || t0 >= token_count()) {
    return;
  }
  let wbase = (row + p.row_offset) * p.cols4;
  let s = p.x_stride4;
  let x0 = t0 * s;
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < p.cols4; k++) {
    let w = load_w4(wbase + k);
    acc += vec4<f32>(dot(w, X[x0 + k]), dot(w, X[x0 + s + k]), dot(w, X[x0 + 2u * s + k]), dot(w, X[x0 + 3u * s + k]));
  }
  store_tile(row, t0, acc);
}

// Decode: one token, so no tile: a quarter of the multiply-adds of main.
@compute @workgroup_size(64)
fn main_one(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= p.rows || state.ntok == 0u) {
    return;
  }
  let wbase = (row + p.row_offset) * p.cols4;
  var acc = 0.0;
  for (var k = 0u; k < p.cols4; k++) {
    acc += dot(load_w4(wbase + k), X[k]);
  }
  store_one(row, acc);
}
