// After a sparse decode pass: add each layer's active-neuron count to the running totals that
// report the sparsity reached, and clear the per-token counters for the next pass.
struct StatsParams {
  layers: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
@group(0) @binding(1) var<uniform> p: StatsParams;
@group(0) @binding(2) var<storage, read_write> count: array<u32>;
@group(0) @binding(3) var<storage, read_write> totals: array<u32>;

@compute @workgroup_size(1)
fn main() {
  for (var l = 0u; l < p.layers; l++) {
    totals[l] += count[l];
    count[l] = 0u;
  }
}
