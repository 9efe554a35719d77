// Negative log-likelihood of each next token: logsumexp(logits[t]) - logits[t][target[t]].
//#include common

struct NllParams {
  vocab: u32,
  stride: u32,
}
@group(0) @binding(0) var<uniform> p: NllParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;
@group(0) @binding(4) var<storage, read_write> nll: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  if (t >= state.ntok) {
    return;
  }
  let base = t * p.stride;
  var m = -3.4e38;
  for (var i = 0u; i < p.vocab; i++) {
    m = max(m, logits[base + i]);
  }
  var s = 0.0;
  for (var i = 0u; i < p.vocab; i++) {
    s += exp(logits[base + i] - m);
  }
  nll[t] = log(s) + m - logits[base + min(targets[t], p.vocab - 1u)];
}
