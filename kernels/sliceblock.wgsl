// Where a float matrix $W in column slices (formats f16s/f32s, src/engine/weights.ts) keeps row
// `row`'s block k of 8 columns: slice by slice, $SB blocks wide (the last may be narrower), every
// row's part of a slice one after another. A down projection's workgroup walks one slice down the
// neurons and so reads one contiguous stream, which a CPU's prefetcher follows even where a CATS
// mask skips rows, as long as the walk keeps touching it (TOUCH in down1.wgsl). The kernel gives
// the rows of the bound part: slice_rows_$W().
fn at8_$W(row: u32, k: u32, cols8: u32) -> u32 {
  let s0 = k / $SBu * $SBu;
  return s0 * slice_rows_$W() + row * min($SBu, cols8 - s0) + (k - s0);
}

// Row `row`'s block k of 4 columns: half k % 2 of its 8-column block.
fn at4_$W(row: u32, k: u32, cols4: u32) -> u32 {
  return 2u * at8_$W(row, k / 2u, cols4 / 2u) + k % 2u;
}
