// Unary elementwise ops over f32 activations: scale, silu, gelu_tanh.
//
// Bindings: 0 params (uniform Params), 1 a: array<f32> [count] (the input), 2 out: array<f32> [count].
// Workgroup: 256 threads along x, one element each; 2-D grid as in elementwise_binary.wgsl.

struct Params {
  count: u32,   // elements of a and out
  factor: f32,  // scale's multiplier (unused by the others)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn element_index(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
  return (wg.y * groups.x + wg.x) * 256u + local;
}

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) local: u32) {
  let i = element_index(wg, groups, local);
  if (i >= params.count) { return; }
  out[i] = a[i] * params.factor;
}

@compute @workgroup_size(256)
fn silu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
  let i = element_index(wg, groups, local);
  if (i >= params.count) { return; }
  let x = a[i];
  out[i] = x / (1.0 + exp(-x));
}

// gelu with the tanh approximation, as Gemma's gelu_pytorch_tanh:
// 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³). Since 1 + tanh(u) = 2·sigmoid(2u), this is
// x·sigmoid(2u) = x / (1 + exp(−2u)): no cancellation for large negative x (where 1 + tanh(u) → 0),
// and exp overflowing to +inf still gives the right limit (−0).
@compute @workgroup_size(256)
fn gelu_tanh(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) local: u32) {
  let i = element_index(wg, groups, local);
  if (i >= params.count) { return; }
  let x = a[i];
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  out[i] = x / (1.0 + exp(-2.0 * u));
}
