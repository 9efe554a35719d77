@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  let t0 = gid.y * TILE;
  if (row >= p.inter || t0 >= state.ntok) {
    return;
  }
  let gbase = row * p.cols4;
  let ubase = (row + p.inter) * p.cols4;
  let x0 = t0 * p.x_stride4;
  var g = vec4<f32>(0.0);
  var u = vec4<f32>(0.0);
  for (var k = 0u; k < p.cols4; k++) {
    g += dot_tile(gbase, x0, k);
    u += dot_tile(ubase, x0, k);
  }
  store_act(row, t0, g, u);
}
