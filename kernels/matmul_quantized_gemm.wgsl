// x · wᵀ for many rows of x (prefill), w in MLX's affine quantization: out[m, n] = Σ_k x[m, k] ·
// (scale[n, g]·q[n, k] + bias[n, g]), g = k / group size. A tiled GEMM: arithmetic, not reading the
// weights, is the cost here. Few rows of x (decode) use matmul_quantized_gemv.wgsl.
//
// Bindings: 0 params (uniform Params),
//   1 x: array<vec4<f32>> [m, k] f32 activations (k is a multiple of 32, so rows are whole vec4s),
//   2 weight: array<vec4<u32>> [rows, k·BITS/128], 32/BITS values per u32, first value in the lowest bits;
//     a row chunk of a larger matrix is bound at its byte offset,
//   3 scales, 4 biases: array<u32> [rows, k/group size], f32 bits or packed 16-bit pairs (params.scale_dtype),
//   5 out: array<f32> [m, out_stride]; a dispatch writes columns out_offset … out_offset + rows − 1;
//     split over k (below), partial sums [splits, m, out_stride] for matmul_reduce_splits.wgsl.
// Workgroup: 256 threads compute a 64×64 tile of out, 4×4 each; k advances 32 at a time through tiles of x
//   and dequantized w in workgroup memory (a step of 32 never straddles a group). Grid: (ceil(rows / 64),
//   ceil(m / 64), splits): with few tiles (few rows of x, few rows of w) the GPU would sit mostly idle, so
//   workgroup z sums only k_per_split of k and writes its partial sums at z · split_stride.

struct Params {
  rows: u32,        // rows of w this dispatch covers (output columns it writes)
  k: u32,           // inner dimension: columns of x and of w
  m: u32,           // rows of x
  out_stride: u32,  // columns of out (rows of the whole matrix)
  out_offset: u32,  // first column of out this dispatch writes
  group_shift: u32, // log2 of the group size (32, 64 or 128)
  scale_dtype: u32, // scales and biases: 0 f32, 1 f16, 2 bf16 (a uniform branch: one pipeline serves all)
  k_per_split: u32, // k summed by one workgroup: a multiple of 32 (k when not split)
  split_stride: u32, // elements between the partial sums of consecutive splits (0 when not split)
}

override BITS: u32 = 4u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> biases: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WORKGROUP_SIZE = 256u;

fn decode_scale_word(word: u32, index: u32) -> f32 {
  if (params.scale_dtype == 0u) { return bitcast<f32>(word); }
  let half = (word >> ((index & 1u) * 16u)) & 0xffffu;
  if (params.scale_dtype == 2u) { return bitcast<f32>(half << 16u); }
  return unpack2x16float(half).x;
}

fn scale_at(index: u32) -> f32 {
  return decode_scale_word(scales[select(index, index >> 1u, params.scale_dtype != 0u)], index);
}

fn bias_at(index: u32) -> f32 {
  return decode_scale_word(biases[select(index, index >> 1u, params.scale_dtype != 0u)], index);
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
  let x_row_vec4s = params.k / 4u;
  let chunks_per_row = params.k * BITS / 128u;
  let groups_per_row = params.k >> params.group_shift;
  // The w element this thread dequantizes: 8 consecutive values of one row per k step.
  let w_row = local / 4u;
  let w_part = local % 4u;
  let row = min(n0 + w_row, params.rows - 1u);

  var acc: array<vec4<f32>, 4>;
  let k_begin = wg.z * params.k_per_split;
  let k_end = min(params.k, k_begin + params.k_per_split);
  for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
    for (var i = 0u; i < 2u; i++) {
      let item = local + i * WORKGROUP_SIZE;
      let m = item / 8u;
      let kv = item % 8u;
      var v = vec4<f32>(0.0);
      if (m0 + m < params.m) { v = x[(m0 + m) * x_row_vec4s + k0 / 4u + kv]; }
      for (var c = 0u; c < 4u; c++) { x_tile[(kv * 4u + c) * 16u + m / 4u][m % 4u] = v[c]; }
    }
    let group = row * groups_per_row + (k0 >> params.group_shift);
    let s = scale_at(group);
    let b = bias_at(group);
    let column = w_part * 8u;  // first of this thread's 8 values within the 32 of this step
    if (BITS == 4u) {
      let word = weight[row * chunks_per_row + k0 / 32u][w_part];
      for (var i = 0u; i < 8u; i++) {
        w_tile[(column + i) * 16u + w_row / 4u][w_row % 4u] = s * f32((word >> (4u * i)) & 0xfu) + b;
      }
    } else {
      let words = weight[row * chunks_per_row + k0 / 16u + w_part / 2u];
      let first = words[(w_part % 2u) * 2u];
      let second = words[(w_part % 2u) * 2u + 1u];
      for (var i = 0u; i < 4u; i++) {
        w_tile[(column + i) * 16u + w_row / 4u][w_row % 4u] = s * f32((first >> (8u * i)) & 0xffu) + b;
        w_tile[(column + 4u + i) * 16u + w_row / 4u][w_row % 4u] = s * f32((second >> (8u * i)) & 0xffu) + b;
      }
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
