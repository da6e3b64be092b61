// Binary elementwise ops over f32 activations: add and mul, with b broadcast over rows when it is
// one row (a bias or a per-feature weight).
//
// Bindings: 0 params (uniform Params), 1 a: array<f32> [count], 2 b: array<f32> [count or b_count],
//   3 out: array<f32> [count].
// Workgroup: 256 threads along x, one element each; the grid is 2-D (x up to 65535 workgroups, y rows
// of that) so tensors above 16M elements fit. Element index = (wg.y·num_wg.x + wg.x)·256 + local.x.

struct Params {
  count: u32,    // elements of a and out
  b_count: u32,  // elements of b: equal to count, or one row broadcast (count % b_count == 0)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn element_index(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
  return (wg.y * groups.x + wg.x) * 256u + local;
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) local: u32) {
  let i = element_index(wg, groups, local);
  if (i >= params.count) { return; }
  out[i] = a[i] + b[i % params.b_count];
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) local: u32) {
  let i = element_index(wg, groups, local);
  if (i >= params.count) { return; }
  out[i] = a[i] * b[i % params.b_count];
}
