// SwiGLU over all neurons: W is W_gate, W2 is W_up (separate buffers keep each under the
// adapter's per-binding limit); Y[t][r] = silu(gate_r . x) * (up_r . x). With MASKED, CATS zeroes neurons whose |silu| is below
// the layer's threshold (the batched equivalent of the sparse decode kernels) and counts the
// active ones; with CAPTURE, |silu| of every neuron is written out for calibration.
struct GateUpParams {
  inter: u32,
  cols4: u32,
  x_stride4: u32,
  y_stride: u32,
  threshold: f32,
  layer: u32,
  capture_offset: u32,
  flags: u32,
}
const MASKED: u32 = 1u;
const CAPTURE: u32 = 2u;

@group(0) @binding(1) var<uniform> p: GateUpParams;
@group(0) @binding(2) var<storage, read> state: State;
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read_write> capture: array<f32>;
@group(0) @binding(6) var<storage, read_write> active_count: array<atomic<u32>>;

const TILE: u32 = 4u;

fn silu(g: vec4<f32>) -> vec4<f32> {
  return g / (vec4<f32>(1.0) + exp(-g));
}

fn dot_tile(w: vec4<f32>, x0: u32, k: u32) -> vec4<f32> {
  let s = p.x_stride4;
  return vec4<f32>(dot(w, X[x0 + k]), dot(w, X[x0 + s + k]), dot(w, X[x0 + 2u * s + k]), dot(w, X[x0 + 3u * s + k]));
}

fn store_act(row: u32, t0: u32, g: vec4<f32>, u: vec4<f32>) {
  let a = silu(g);
  let n = min(TILE, state.ntok - t0);
  var n_active = 0u;
  for (var j = 0u; j < n; j++) {
    var aj = a[j];
    if ((p.flags & CAPTURE) != 0u) {
      capture[p.capture_offset + (t0 + j) * p.inter + row] = abs(aj);
    }
    if ((p.flags & MASKED) != 0u) {
      if (abs(aj) < p.threshold) {
        aj = 0.0;
      } else {
        n_active += 1u;
      }
    }
    Y[(t0 + j) * p.y_stride + row] = aj * u[j];
  }
  if (n_active > 0u) {
    atomicAdd(&active_count[p.layer], n_active);
  }
}

fn store_act_one(row: u32, g: f32, u: f32) {
  store_act(row, 0u, vec4<f32>(g, 0.0, 0.0, 0.0), vec4<f32>(u, 0.0, 0.0, 0.0));
}
