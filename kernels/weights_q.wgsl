// Reader of a quantized matrix in blocks of 4 columns (qrows.wgsl's layout), for batched passes.
fn load_$W(row: u32, k: u32, cols4: u32) -> vec4<f32> {
  let col = k * 4u;
  let so = qscale_$W(row, col / QG_$W, cols4 / 2u);
  let q = qunpack_$W(qword_$W(row, col, cols4 / 2u));
  // At 4 bits a word holds 8 columns: the odd block of 4 is its upper half.
  let v = select(q[0], q[1], QB_$W == 4u && (k & 1u) == 1u);
  return v * so.x + so.y;
}
