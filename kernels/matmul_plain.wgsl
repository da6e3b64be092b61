// x · wᵀ with a plain weight matrix w [rows, k] in f32, f16 or bf16, any shape: a tiled GEMM for many rows
// of x (prefill), and the fallback for decode when rows of w are not whole 16-byte chunks (see
// matmul_plain_vec4.wgsl for the fast decode path).
//
// Bindings: 0 params (uniform Params),
//   1 x: array<f32> [m, k] f32 activations,
//   2 weight: array<u32> [rows, k]: f32 bits, or 16-bit values packed two per u32, first value in the low
//     half; a row chunk of a larger matrix is bound at its (256-byte aligned, so even) element offset,
//   3 out: array<f32> [m, out_stride]; a dispatch writes columns out_offset … out_offset + rows − 1;
//     split over k (below), partial sums [splits, m, out_stride] for matmul_reduce_splits.wgsl.
// Workgroup: 256 threads compute a 64×64 tile of out, 4×4 each; k advances 32 at a time through tiles of
//   x and w in workgroup memory. Grid: (ceil(rows / 64), ceil(m / 64), splits): with few tiles the GPU
//   would sit mostly idle, so workgroup z sums only k_per_split of k and writes its partial sums at
//   z · split_stride.

struct Params {
  rows: u32,        // rows of w this dispatch covers (output columns it writes)
  k: u32,           // inner dimension: columns of x and of w
  m: u32,           // rows of x
  out_stride: u32,  // columns of out (rows of the whole matrix)
  out_offset: u32,  // first column of out this dispatch writes
  k_per_split: u32, // k summed by one workgroup: a multiple of 32 (k when not split)
  split_stride: u32, // elements between the partial sums of consecutive splits (0 when not split)
}

override WEIGHT_DTYPE: u32 = 0u;  // 0 f32, 1 f16, 2 bf16

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn weight_at(index: u32) -> f32 {
  if (WEIGHT_DTYPE == 0u) { return bitcast<f32>(weight[index]); }
  let half = (weight[index >> 1u] >> ((index & 1u) * 16u)) & 0xffffu;
  if (WEIGHT_DTYPE == 2u) { return bitcast<f32>(half << 16u); }
  return unpack2x16float(half).x;
}

const TILE = 64u;
const TILE_K = 32u;
// Tiles stored k-major so a thread reads its 4 rows (or 4 columns) at one k as one vec4:
// x_tile[k · 16 + m / 4][m % 4] = x[m0 + m, k0 + k], w_tile[k · 16 + n / 4][n % 4] = w[n0 + n, k0 + k].
var<workgroup> x_tile: array<vec4<f32>, 512>;
var<workgroup> w_tile: array<vec4<f32>, 512>;

@compute @workgroup_size(256)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let n0 = wg.x * TILE;
  let m0 = wg.y * TILE;
  let tn = local % 16u;
  let tm = local / 16u;
  var acc: array<vec4<f32>, 4>;
  let k_begin = wg.z * params.k_per_split;
  let k_end = min(params.k, k_begin + params.k_per_split);
  for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
    // 64 rows × 32 columns of each operand, 8 elements per thread, consecutive threads along k.
    for (var i = 0u; i < 8u; i++) {
      let item = local + i * 256u;
      let r = item / TILE_K;
      let k = k0 + item % TILE_K;
      var x_value = 0.0;
      if (m0 + r < params.m && k < params.k) { x_value = x[(m0 + r) * params.k + k]; }
      x_tile[(item % TILE_K) * 16u + r / 4u][r % 4u] = x_value;
      var w_value = 0.0;
      if (n0 + r < params.rows && k < params.k) { w_value = weight_at((n0 + r) * params.k + k); }
      w_tile[(item % TILE_K) * 16u + r / 4u][r % 4u] = w_value;
    }
    workgroupBarrier();
    for (var k = 0u; k < TILE_K; k++) {
      let a = x_tile[k * 16u + tm];
      let w_values = w_tile[k * 16u + tn];
      acc[0] += a.x * w_values;
      acc[1] += a.y * w_values;
      acc[2] += a.z * w_values;
      acc[3] += a.w * w_values;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + tm * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tn * 4u + j;
      if (m < params.m && n < params.rows) {
        out[wg.z * params.split_stride + m * params.out_stride + params.out_offset + n] = acc[i][j];
      }
    }
  }
}
