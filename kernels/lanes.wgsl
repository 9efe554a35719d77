// How the invocations of a projection kernel team up. A group of lanes shares a block of output
// rows and splits their columns; `group_sum` adds the lanes' partial sums. Three variants:
//   SUBGROUP:  the lanes of a subgroup form a group and add with subgroupAdd (no barrier);
//   WORKGROUP: the whole workgroup is one group and adds in workgroup memory (GPUs without subgroups);
//   neither:   every invocation is a group of one, so nothing is added and no barrier runs (CPU drivers).
// Consts: R rows per group, TM tokens per tile, WG invocations per workgroup, SUBGROUP, WORKGROUP,
// XS (rows variants that share their input across a subgroup of 8, project1.wgsl).
// Groups are numbered across workgroups in x, spilling into y past the per-dimension limit; z is the
// token tile of batched passes.
//#if SUBGROUP
enable subgroups;
diagnostic(off, subgroup_uniformity);
//#elif XS
enable subgroups;
diagnostic(off, subgroup_uniformity);
//#endif

struct Invocation {
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
//#if SUBGROUP
  @builtin(subgroup_id) sg: u32,
  @builtin(num_subgroups) nsg: u32,
  @builtin(subgroup_invocation_id) sg_lane: u32,
  @builtin(subgroup_size) sg_size: u32,
//#elif XS
  @builtin(subgroup_invocation_id) sg_lane: u32,
//#endif
}

struct Group {
  id: u32,     // which group of rows
  lane: u32,   // this invocation's index in the group
  count: u32,  // lanes in the group
}

fn workgroup_index(inv: Invocation) -> u32 {
  return inv.wid.x + inv.wid.y * inv.nwg.x;
}

// A group's partial sums: R rows x TM tokens, plus one more row for the RMSNorm's sums of squares.
alias Sums = array<array<vec4<f32>, TM>, R + 1u>;

//#if SUBGROUP
fn group_of(inv: Invocation) -> Group {
  return Group(workgroup_index(inv) * inv.nsg + inv.sg, inv.sg_lane, inv.sg_size);
}

// Groups numbered within the workgroup, for kernels whose workgroup owns a block of rows.
fn local_group(inv: Invocation) -> Group {
  return Group(inv.sg, inv.sg_lane, inv.sg_size);
}

fn local_groups(inv: Invocation) -> u32 {
  return inv.nsg;
}

// Adds every lane's partial sums; every lane gets the totals.
fn group_sums(g: Group, s: ptr<function, Sums>) {
  for (var r = 0u; r <= R; r++) {
    for (var t = 0u; t < TM; t++) {
      (*s)[r][t] = subgroupAdd((*s)[r][t]);
    }
  }
}
//#elif WORKGROUP
var<workgroup> lanes_partial: array<Sums, WG>;

fn group_of(inv: Invocation) -> Group {
  return Group(workgroup_index(inv), inv.lid, WG);
}

fn local_group(inv: Invocation) -> Group {
  return Group(0u, inv.lid, WG);
}

fn local_groups(inv: Invocation) -> u32 {
  return 1u;
}

// Two levels over the lanes for all the sums at once, 3 barriers in all: 8 lanes each add every
// 8th lane's sums, then every lane adds those 8. Call from workgroup-uniform control flow.
fn group_sums(g: Group, s: ptr<function, Sums>) {
  lanes_partial[g.lane] = *s;
  workgroupBarrier();
  if (g.lane < 8u) {
    var t = lanes_partial[g.lane];
    for (var j = g.lane + 8u; j < WG; j += 8u) {
      for (var r = 0u; r <= R; r++) {
        t[r] = sum_rows(t[r], lanes_partial[j][r]);
      }
    }
    lanes_partial[g.lane] = t;
  }
  workgroupBarrier();
  var total = lanes_partial[0];
  for (var i = 1u; i < min(8u, WG); i++) {
    for (var r = 0u; r <= R; r++) {
      total[r] = sum_rows(total[r], lanes_partial[i][r]);
    }
  }
  *s = total;
  workgroupBarrier();
}

fn sum_rows(a: array<vec4<f32>, TM>, b: array<vec4<f32>, TM>) -> array<vec4<f32>, TM> {
  var out = a;
  for (var t = 0u; t < TM; t++) {
    out[t] += b[t];
  }
  return out;
}
//#else
//#if XS
// This invocation's lane in its subgroup of 8: which share of the input it reads for all 8 (project1.wgsl).
var<private> x_lane: u32;

// The fused RMSNorm's sums of squares (row R) after a shared-input projection: each lane squared
// only the input it read, once, rather than all 8 shares after the shuffles, so the subgroup adds
// them up.
fn mine_squares(acc: ptr<function, Sums>) {
  for (var t = 0u; t < TM; t++) {
    (*acc)[R][t] = subgroupAdd((*acc)[R][t]);
  }
}
//#endif

fn group_of(inv: Invocation) -> Group {
//#if XS
  x_lane = inv.sg_lane;
//#endif
  return Group(workgroup_index(inv) * WG + inv.lid, 0u, 1u);
}

fn local_group(inv: Invocation) -> Group {
//#if XS
  x_lane = inv.sg_lane;
//#endif
  return Group(inv.lid, 0u, 1u);
}

fn local_groups(inv: Invocation) -> u32 {
  return WG;
}

fn group_sums(g: Group, s: ptr<function, Sums>) {}
//#endif

// Groups past the last row still run, on the last row, so that every lane reaches group_sums.
fn group_row(g: Group, r: u32, rows: u32) -> u32 {
  return min(g.id * R + r, rows - 1u);
}

fn hsum(v: vec4<f32>) -> f32 {
  return v.x + v.y + v.z + v.w;
}
