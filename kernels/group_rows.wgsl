// The prologue every projection shares: the group's R rows of $M (all of them read) times the
// tile's inputs, summed across the group's lanes; acc[R][t] holds the inputs' sums of squares for
// a fused RMSNorm. Needs project(1)_$M (project.wgsl or project1.wgsl under XU) included first.
fn all_rows_$M(g: Group, t0: u32, n_rows: u32, x_stride4: u32, cols4: u32) -> Sums {
  var rows: array<u32, R>;
  var on: array<bool, R>;
  for (var r = 0u; r < R; r++) {
    rows[r] = group_row(g, r, n_rows);
    on[r] = true;
  }
  set_x_base(t0, x_stride4);
  var acc: Sums;
//#if W8
  project1_$M(g, rows, on, cols4 / 2u, &acc);
//#else
  project_$M(g, rows, on, cols4, &acc);
//#endif
  group_sums(g, &acc);
  return acc;
}
