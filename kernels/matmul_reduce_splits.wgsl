// The second half of a GEMM split over k (matmul_quantized_gemm.wgsl, matmul_plain.wgsl): out[m, n] =
// Σ over splits s of partials[s, m, n], summed in split order so the result does not depend on timing.
//
// Bindings: 0 params (uniform Params),
//   1 partials: array<f32> [splits, m, rows] (split s at s · split_stride),
//   2 out: array<f32> [m, out_stride]; this dispatch writes columns out_offset … out_offset + rows − 1.
// Workgroup: 256 threads along x, one output element each; a 2-D grid past 65,535 workgroups, as in
//   elementwise_binary.wgsl.

struct Params {
  rows: u32,         // output columns this dispatch writes
  m: u32,            // rows of out
  splits: u32,
  split_stride: u32, // elements between consecutive splits' partial sums (≥ m · rows)
  out_stride: u32,
  out_offset: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) local: u32) {
  let i = (wg.y * groups.x + wg.x) * 256u + local;
  if (i >= params.m * params.rows) { return; }
  let row = i / params.rows;
  let column = i % params.rows;
  var sum = 0.0;
  for (var s = 0u; s < params.splits; s++) { sum += partials[s * params.split_stride + i]; }
  out[row * params.out_stride + params.out_offset + column] = sum;
}
