// top-k of each row: the k largest values, descending, with their indices; equal values keep the
// lower index first, NaN ranks below everything, −0 ties with +0.
//
// Every element gets a unique 64-bit key (value key, index key): the value key orders floats as
// unsigned integers, the index key is cols − 1 − index so that the lower index ranks higher. A radix
// select, 8 bits per pass from the top, narrows down the k-th largest key: each pass histograms the
// next digit of the elements that still match the chosen prefix and picks the bin holding the k-th.
// It stops as soon as the chosen bin is taken whole (after two or three passes on real logits). Then
// the k elements whose key is at least that prefix go to shared memory in any order, and a bitonic
// sort there orders them. Reads: (passes + 1) × cols per row; no global scratch.
//
// Bindings: 0 params (uniform Params), 1 x: array<f32> [rows, cols], 2 values: array<f32> [rows, k],
//   3 indices: array<u32> [rows, k].
// Workgroup: 256 threads along x, one workgroup per row, threads striding over columns; k ≤ 256
// (one sorted slot per thread). Row = wg.y·num_wg.x + wg.x.

struct Params {
  rows: u32,
  cols: u32,
  k: u32,
  index_digits: u32,  // 8-bit digits of cols − 1: index-key passes needed to break ties
  sort_size: u32,     // k rounded up to a power of two: the bitonic sort's width
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;

const WORKGROUP_SIZE = 256u;
const MAX_K = 256u;

var<workgroup> histogram: array<atomic<u32>, 256>;
var<workgroup> prefix: vec2<u32>;       // chosen digits so far; undecided bits are 0
var<workgroup> prefix_mask: vec2<u32>;  // which bits of the key are decided
var<workgroup> still_needed: u32;       // of the elements matching prefix, how many are in the top k
var<workgroup> selection_done: u32;
var<workgroup> candidate_count: atomic<u32>;
var<workgroup> candidates: array<vec2<u32>, MAX_K>;

// Larger float → larger key. NaN (by its bits: WGSL may fold `v != v`) → 0, below −inf; −0 → +0.
fn value_key(value: f32) -> u32 {
  let bits = bitcast<u32>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) { return 0u; }
  if (bits == 0x80000000u) { return 0x80000000u; }
  return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn value_of_key(key: u32) -> f32 {
  return bitcast<f32>(select(~key, key & 0x7fffffffu, (key & 0x80000000u) != 0u));
}

fn key_at(row_start: u32, col: u32) -> vec2<u32> {
  return vec2<u32>(value_key(x[row_start + col]), params.cols - 1u - col);
}

fn key_less(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}

// Thread 0: after a histogram pass, extend the prefix by the digit whose bin holds the k-th key.
fn choose_digit(shift: u32, in_value_word: bool) {
  let needed = still_needed;
  var above = 0u;
  var chosen = 0u;
  var bucket = 0u;
  for (var bin = 255i; bin >= 0; bin--) {
    let count = atomicLoad(&histogram[bin]);
    if (above + count >= needed) {
      chosen = u32(bin);
      bucket = count;
      break;
    }
    above += count;
  }
  still_needed = needed - above;
  if (in_value_word) {
    prefix.x |= chosen << shift;
    prefix_mask.x |= 255u << shift;
  } else {
    prefix.y |= chosen << shift;
    prefix_mask.y |= 255u << shift;
  }
  if (bucket == still_needed) { selection_done = 1u; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn top_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) local: u32) {
  let row = wg.y * groups.x + wg.x;
  if (row >= params.rows) { return; }
  let row_start = row * params.cols;

  if (local == 0u) {
    prefix = vec2<u32>(0u);
    prefix_mask = vec2<u32>(0u);
    still_needed = params.k;
    selection_done = 0u;
    atomicStore(&candidate_count, 0u);
  }
  candidates[local] = vec2<u32>(0u);  // padding ranks below every real key but (NaN, last index)

  // Digits 0…3 walk the value key from its top byte, then index_digits walk the index key.
  let digit_steps = 4u + params.index_digits;
  for (var step = 0u; step < digit_steps; step++) {
    atomicStore(&histogram[local], 0u);
    if (workgroupUniformLoad(&selection_done) == 1u) { break; }
    let in_value_word = step < 4u;
    let shift = select(8u * (params.index_digits - 1u - (step - 4u)), 24u - 8u * step, in_value_word);
    let current_prefix = prefix;
    let current_mask = prefix_mask;
    // Runs of equal digits are counted locally first: logits often share their top bytes, and one
    // hot bin would otherwise take 256 contending atomics per stride.
    var run_digit = 0u;
    var run_length = 0u;
    for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
      let key = key_at(row_start, col);
      if (all((key & current_mask) == current_prefix)) {
        let digit = (select(key.y, key.x, in_value_word) >> shift) & 255u;
        if (digit != run_digit && run_length > 0u) {
          atomicAdd(&histogram[run_digit], run_length);
          run_length = 0u;
        }
        run_digit = digit;
        run_length += 1u;
      }
    }
    if (run_length > 0u) { atomicAdd(&histogram[run_digit], run_length); }
    workgroupBarrier();
    if (local == 0u) { choose_digit(shift, in_value_word); }
    workgroupBarrier();
  }

  // Exactly k keys are ≥ the prefix (keys are unique), so the slots never overflow; checked anyway.
  let threshold = prefix;
  for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
    let key = key_at(row_start, col);
    if (!key_less(key, threshold)) {
      let slot = atomicAdd(&candidate_count, 1u);
      if (slot < MAX_K) { candidates[slot] = key; }
    }
  }
  workgroupBarrier();

  // Bitonic sort, descending, of the first sort_size slots.
  for (var size = 2u; size <= params.sort_size; size <<= 1u) {
    for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
      let partner = local ^ stride;
      if (local < params.sort_size && partner > local) {
        let a = candidates[local];
        let b = candidates[partner];
        let descending_block = (local & size) == 0u;
        if (key_less(a, b) == descending_block) {
          candidates[local] = b;
          candidates[partner] = a;
        }
      }
      workgroupBarrier();
    }
  }

  if (local < params.k) {
    let key = candidates[local];
    values[row * params.k + local] = value_of_key(key.x);
    indices[row * params.k + local] = params.cols - 1u - key.y;
  }
}
