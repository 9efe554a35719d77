// The input rows X of a projection, token t of the tile at x_base[t]. With XU, X is a uniform array
// of XN vec4s bound at the first row of the tile of TM tokens this dispatch computes (one dispatch
// per tile, token0 its first token): on CPU drivers an element the lanes index by loop counter
// then costs a third of a storage read, which the bounds-checked storage path spends per lane.
// Otherwise X is a storage array and the tile is grid z. The RMSNorm gain that feeds a projection
// is folded into its weights at load; only a tied lm_head, which shares the embedding's weights,
// applies its gain G here (GAIN).
//#if XU
@group(0) @binding(2) var<uniform> X: array<vec4<f32>, XN>;
//#else
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
//#endif
//#if GAIN
@group(0) @binding(3) var<storage, read> G: array<vec4<f32>>;
//#endif

var<private> x_base: array<u32, TM>;

fn gained(x: vec4<f32>, k: u32) -> vec4<f32> {
//#if GAIN
  return x * G[k];
//#else
  return x;
//#endif
}

// The first token of the tile this invocation computes.
fn tile_start(inv: Invocation, token0: u32) -> u32 {
//#if XU
  return token0;
//#else
  return token0 + inv.wid.z * TM;
//#endif
}

// Where each token's X row starts: relative to the bound tile with XU, clamped to the pass's last token otherwise.
fn set_x_base(t0: u32, x_stride4: u32) {
  for (var t = 0u; t < TM; t++) {
//#if XU
    x_base[t] = t * x_stride4;
//#else
    x_base[t] = min(t0 + t, state.ntok - 1u) * x_stride4;
//#endif
  }
}
