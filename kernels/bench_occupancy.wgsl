// The probe of bench/occupancy.ts: how many workgroups of a given size and workgroup memory one GPU
// core (an NVIDIA SM) runs at once. Every thread runs a fixed chain of dependent FMAs, which keeps
// latency and not throughput the limit, so workgroups that run side by side take no longer than one
// alone: the dispatch time steps up only when the workgroups no longer fit in one wave.
//
// Bindings: 0 params (uniform Params), 1 out: array<f32> [workgroups · THREADS] (keeps the chain live).
// Workgroup: THREADS threads, SHARED_FLOATS floats of workgroup memory (written, then read once, so
//   the compiler keeps it). 1-D grid.

struct Params {
  steps: u32,
  seed: f32,
}

override THREADS: u32 = 128u;
override SHARED_FLOATS: u32 = 1u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

var<workgroup> scratch: array<f32, SHARED_FLOATS>;

@compute @workgroup_size(THREADS)
fn occupy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  for (var i = local; i < SHARED_FLOATS; i += THREADS) { scratch[i] = f32(i) * params.seed; }
  workgroupBarrier();
  var value = scratch[(local * 7u) % SHARED_FLOATS];
  for (var step = 0u; step < params.steps; step++) { value = fma(value, 0.999, params.seed); }
  out[wg.x * THREADS + local] = value;
}
