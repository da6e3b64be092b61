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
// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). tanh is written through exp of a clamped argument,
// because large |u| makes WGSL's tanh return NaN on some drivers.
@compute @workgroup_size(256)
fn gelu_tanh(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) local: u32) {
  let i = element_index(wg, groups, local);
  if (i >= params.count) { return; }
  let x = a[i];
  let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
  let e = exp(2.0 * u);
  out[i] = 0.5 * x * (1.0 + (e - 1.0) / (e + 1.0));
}
