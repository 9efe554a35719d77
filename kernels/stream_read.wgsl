// The adapter's read ceiling: every lane streams its share of a buffer (whole multiples of
// WG * PER vec4s, one share per workgroup) and folds it into a value that is almost never written,
// so only the reads cost. Lanes read neighbouring vec4s, the pattern every adapter reads fastest.
// U loads a step into U accumulators: CPU drivers run each lane's loads as scalar code, where
// one load a step leaves the loop's own instructions and the dependent fold in the way, and
// the matrix kernels (4 rows a lane) issue several at once; a ceiling they outrun is none.
// Consts: WG lanes, PER vec4s per lane (a multiple of U), U loads per step.
@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<vec4<u32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  let base = w * WG * PER + lid;
  var acc: array<vec4<u32>, U>;
  for (var i = 0u; i < PER; i += U) {
    for (var u = 0u; u < U; u++) {
      acc[u] ^= A[base + (i + u) * WG];
    }
  }
  var all = vec4<u32>(0u);
  for (var u = 0u; u < U; u++) {
    all ^= acc[u];
  }
  if (all.x == 0x9e3779b9u && all.y == 0x7f4a7c15u) {
    sink[0] = all;
  }
}
