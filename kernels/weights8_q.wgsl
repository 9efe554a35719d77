// Reader of a quantized matrix in blocks of 8 columns (qrows.wgsl's layout): the generic path of
// one-token kernels; projection loops read whole chunks instead (project1.wgsl, QUANT).
fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let col = k * 8u;
  let so = qscale_$W(row, col / QG_$W, cols8);
  var q = qunpack_$W(qword_$W(row, col, cols8));
  if (QB_$W == 8u) {
    q[1] = qunpack_$W(qword_$W(row, col + 4u, cols8))[0];
  }
  return mat2x4<f32>(q[0] * so.x + so.y, q[1] * so.x + so.y);
}
