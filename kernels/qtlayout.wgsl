// The layout of a transposed quantized matrix $W (W_down^T: a row per neuron) whose GPTQ groups
// run down the rows: $G consecutive rows share one scale and offset per column. The buffer is the
// groups in order, each as its scales (f32 bits, one per padded column), its offsets (-zero *
// scale), then its rows' $BITS-bit codes in blocks of 8 columns ($BITS / 4 u32s each); the last
// group may hold fewer rows. The codes go row after row (format q{bits}tg{G}) or (q{bits}sg{G}) in
// column slices of $SB blocks, each slice every row of the group in turn, so that a down
// projection walking one slice down the neurons reads one stream (as sliceblock.wgsl for floats;
// the kernel gives the matrix's rows: slice_rows_$W()).
const QB_$W: u32 = $BITSu;
const QG_$W: u32 = $Gu;
const QS_$W: bool = $QS;

fn qtbase_$W(gi: u32, cols8: u32) -> u32 {
  return gi * (16u * cols8 + QG_$W * cols8 * (QB_$W / 4u));
}

// Where block k (8 columns) of a row's codes is, in u32s.
fn qtat_$W(row: u32, k: u32, cols8: u32) -> u32 {
  let gi = row / QG_$W;
  let codes = qtbase_$W(gi, cols8) + 16u * cols8;
  let r = row - gi * QG_$W;
  if (!QS_$W) {
    return codes + (r * cols8 + k) * (QB_$W / 4u);
  }
  let in_group = min(QG_$W, slice_rows_$W() - gi * QG_$W);
  let s0 = k / $SBu * $SBu;
  return codes + (s0 * in_group + r * min($SBu, cols8 - s0) + k - s0) * (QB_$W / 4u);
}
