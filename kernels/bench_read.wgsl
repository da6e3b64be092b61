// The bandwidth baseline of bench/webgpu-kernels.ts: read a large buffer as fast as the device can, as a
// GEMV reads its weights. Every thread folds what it read into one value per workgroup, so no load is dead
// code the compiler could drop.
//
// Bindings: 0 params (uniform Params), 1 data: array<vec4<u32>> [vec4_count], 2 out: array<u32> [workgroups].
// Workgroup: 256 threads; workgroup w reads vec4s (w·ITEMS + i)·256 + local for i < ITEMS, so each step of
//   a workgroup is one contiguous 4 KiB. 2-D grid, w = wg.y·num_wg.x + wg.x.

struct Params {
  vec4_count: u32,
}

override ITEMS: u32 = 8u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> data: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> folded: atomic<u32>;

@compute @workgroup_size(256)
fn read_all(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) local: u32) {
  let workgroup_index = wg.y * groups.x + wg.x;
  var value = vec4<u32>(0u);
  for (var i = 0u; i < ITEMS; i++) {
    let index = (workgroup_index * ITEMS + i) * 256u + local;
    if (index < params.vec4_count) { value ^= data[index]; }
  }
  atomicXor(&folded, value.x ^ value.y ^ value.z ^ value.w);
  workgroupBarrier();
  if (local == 0u) { out[workgroup_index] = atomicLoad(&folded); }
}
