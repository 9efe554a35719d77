// Where a float matrix $W keeps row `row`'s block k of 8 columns. Plain (RB 1): row after row. In
// blocks (RB 32, formats f16b/f32b, src/engine/weights.ts): each 32 rows store their block k side
// by side, in the order the CPU rows kernels read them (8 lanes of 4 rows: lane l's row r at
// r * 8 + l), so that an 8-lane fibre reads one contiguous stretch per step instead of 32 streams,
// which a CPU's prefetcher follows (1.1-1.3x on lavapipe at 768 and 4096 columns).
fn at8_$W(row: u32, k: u32, cols8: u32) -> u32 {
  let j = row % $RBu;
  return ((row / $RBu) * cols8 + k) * $RBu + (j % 4u) * ($RBu / 4u) + j / 4u;
}

// Row `row`'s block k of 4 columns: half k % 2 of its 8-column block.
fn at4_$W(row: u32, k: u32, cols4: u32) -> u32 {
  if ($RBu == 1u) {
    return row * cols4 + k;
  }
  return 2u * at8_$W(row, k / 2u, cols4 / 2u) + k % 2u;
}
