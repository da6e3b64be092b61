// Scaled-dot-product attention of a ragged batch over the paged KV cache, read in place through each
// sequence's block table, for rows the prefill kernel does not take: decode steps, and the last row
// or two of a prefill beyond its whole work items. Causal, GQA, optional sliding window, online
// softmax in f32. Long contexts are split into partitions of `partition_size` keys handled by
// separate workgroups (flash-decoding); with more than one partition each writes an unnormalized
// partial result that attention_combine.wgsl merges.
//
// A decode step is bound by reading the keys and values, so the kernel is built to keep many reads in
// flight with all its state in registers:
// - One workgroup computes a quad of query vectors: `row_count` consecutive rows of one sequence ×
//   the q heads of one head chunk (≤ 4 in all), sharing one kv head, so each key and value read from
//   the cache serves all four. Per-vector state is a vec4 (one component per vector) or a mat4x4
//   (column = one dimension, rows = the four vectors): no per-thread arrays, which GPU compilers may
//   place in local memory.
// - A key is read by LANES threads, lane l owning storage words l, l + ACTIVE_LANES, … of the row:
//   8 values, so consecutive lanes read consecutive words. The lanes' partial dot products are
//   summed by subgroup shuffles (or through workgroup memory where subgroups are missing or smaller
//   than LANES).
// - The workgroup's SLOTS groups of lanes each take KEYS_PER_SLOT keys of every step and keep an
//   online softmax of their own (running max, sum, Σ p·v); the slots are merged once, at the end.
// Steps start at multiples of the step's width in absolute positions, and partitions at multiples of
// `partition_size`, so a vector's result does not depend on the other rows or sequences in the batch.
// Row i of a sequence sits at context_length − query_length + i and sees keys at positions ≤ its
// own (and > position − window).
//
// Bindings: 0 params,
//   1 q: array<f32> [tokens, q_heads, HEAD_DIM],
//   2 k_cache: array<u32>, one layer's keys (layout in kv_cache_write.wgsl), 3 v_cache: values,
//   4 batch: array<u32>: per sequence s at 4s: query_start, query_length, context_length, table_at
//     (the sequence's block table is batch[table_at …]); work items at items_at + 3i: sequence,
//     first row (within the sequence), row count,
//   5 out: array<f32> [tokens, q_heads, HEAD_DIM] (written when partitions == 1),
//   6 partials: array<f32> [tokens, q_heads, partitions, HEAD_DIM + 2]: Σ p·v, max score, Σ p
//     (written when partitions > 1).
// Workgroup: 128 threads = SLOTS × LANES; x = partition, y = work item, z = kv head · head_chunks +
//   head chunk.

//#if SUBGROUPS
diagnostic(off, subgroup_uniformity);
//#endif

override STORAGE: u32;   // 0 f32, 1 f16, 2 quantized
override BITS: u32 = 8u; // quantized only: 4 or 8
override HEAD_DIM: u32;  // a multiple of 8, at most 8 · WORKGROUP
// Threads per key: the smallest power of two ≥ ACTIVE_LANES (HEAD_DIM / 8 lanes hold the row).
override LANES: u32;
// true (only where the file is built with SUBGROUPS and every subgroup spans LANES threads): a key's
// lanes sum their partial scores by shuffles, not through workgroup memory.
override SUBGROUP_SUM: bool = false;

override VALUES_PER_WORD: u32 = select(select(32u / BITS, 2u, STORAGE == 1u), 1u, STORAGE == 0u);
override ROW_WORDS: u32 = HEAD_DIM / VALUES_PER_WORD;
override GROUPS: u32 = select(0u, HEAD_DIM / 64u, STORAGE == 2u);
override ACTIVE_LANES: u32 = HEAD_DIM / 8u;
override SLOTS: u32 = WORKGROUP / LANES;
override STEP_KEYS: u32 = SLOTS * KEYS_PER_SLOT;

const WORKGROUP: u32 = 128u;
const KEYS_PER_SLOT: u32 = 2u;
// Stands for −∞, which WGSL constants cannot hold; exp(NO_SCORE − real) is exactly 0.
const NO_SCORE: f32 = -3.0e38;

struct Params {
  q_heads: u32,
  kv_heads: u32,
  heads_per_chunk: u32,
  head_chunks: u32,
  block_size: u32,
  window: u32, // 0: no sliding window
  partition_size: u32,
  partitions: u32,
  items_at: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read> batch: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// Without SUBGROUP_SUM: each thread's partial scores of its slot's two keys; at the end, the slots'
// Σ p·v, two of a lane's dimensions at a time.
var<workgroup> exchange: array<vec4<f32>, WORKGROUP * 2u>;
var<workgroup> slot_max: array<vec4<f32>, SLOTS>;
var<workgroup> slot_sum: array<vec4<f32>, SLOTS>;

// A lane's 8 values of one row: its storage words in order, each word's values in order.
struct Values {
  lo: vec4<f32>,
  hi: vec4<f32>,
}

// A lane's storage words of one row, as read (decoded when used): f32 words 0–3 and 4–7 in `words`
// and `more`; f16 words 0–3; 8-bit words 0–1 then their groups' scale/bias words; 4-bit the word and
// its group's.
struct Raw {
  words: vec4<u32>,
  more: vec4<u32>,
}

// Where one key's rows are, and whether the key is read at all.
struct KeyAt {
  row: u32,    // word offset of the row in the layer's buffer
  groups: u32, // word offset of its scale/bias words (quantized)
  read: bool,
}

// The sequence and kv head a workgroup reads, for locating keys.
struct Reader {
  table_at: u32,
  kv_head: u32,
  head_block_words: u32,
  end: u32, // first position not read
}

// Two keys' scores against the quad (one vec4 per key).
struct KeyScores {
  a: vec4<f32>,
  b: vec4<f32>,
}

// The dimension of a lane's value `index` (0…7).
fn lane_dim(lane: u32, index: u32) -> u32 {
  return (lane + index / VALUES_PER_WORD * ACTIVE_LANES) * VALUES_PER_WORD + index % VALUES_PER_WORD;
}

fn locate(reader: Reader, position: u32) -> KeyAt {
  if (position >= reader.end) { return KeyAt(0u, 0u, false); }
  let block = batch[reader.table_at + position / params.block_size];
  let head_block = (block * params.kv_heads + reader.kv_head) * reader.head_block_words;
  let offset = position % params.block_size;
  return KeyAt(head_block + offset * ROW_WORDS, head_block + params.block_size * ROW_WORDS + offset * GROUPS, true);
}

fn cache_word(keys: bool, at: u32) -> u32 {
  if (keys) { return k_cache[at]; }
  return v_cache[at];
}

// A lane's words of the key or value row at `at`; zeros where the key is not read. The words of a
// row are lane, lane + ACTIVE_LANES, …: consecutive lanes read consecutive words.
fn read_raw(keys: bool, at: KeyAt, lane: u32) -> Raw {
  var raw = Raw(vec4<u32>(0u), vec4<u32>(0u));
  if (!at.read || lane >= ACTIVE_LANES) { return raw; }
  let word = at.row + lane;
  let stride = ACTIVE_LANES;
  if (STORAGE == 2u) {
    // Each word's values fall in one group of 64 dimensions, whose scale and bias are one word.
    if (BITS == 8u) {
      raw.words = vec4<u32>(cache_word(keys, word), cache_word(keys, word + stride),
        cache_word(keys, at.groups + lane * 4u / 64u), cache_word(keys, at.groups + (lane + stride) * 4u / 64u));
    } else {
      raw.words = vec4<u32>(cache_word(keys, word), cache_word(keys, at.groups + lane * 8u / 64u), 0u, 0u);
    }
    return raw;
  }
  raw.words = vec4<u32>(cache_word(keys, word), cache_word(keys, word + stride), cache_word(keys, word + 2u * stride),
    cache_word(keys, word + 3u * stride));
  if (STORAGE == 0u) {
    raw.more = vec4<u32>(cache_word(keys, word + 4u * stride), cache_word(keys, word + 5u * stride),
      cache_word(keys, word + 6u * stride), cache_word(keys, word + 7u * stride));
  }
  return raw;
}

// Codes of `bits` bits at the given shifts, as scale · code + bias.
fn dequantize(word: u32, shifts: vec4<u32>, scale_bias: vec2<f32>) -> vec4<f32> {
  let codes = (vec4<u32>(word) >> shifts) & vec4<u32>((1u << BITS) - 1u);
  return scale_bias.x * vec4<f32>(codes) + scale_bias.y;
}

fn decode_raw(raw: Raw) -> Values {
  if (STORAGE == 0u) { return Values(bitcast<vec4<f32>>(raw.words), bitcast<vec4<f32>>(raw.more)); }
  if (STORAGE == 1u) {
    return Values(vec4<f32>(unpack2x16float(raw.words.x), unpack2x16float(raw.words.y)),
      vec4<f32>(unpack2x16float(raw.words.z), unpack2x16float(raw.words.w)));
  }
  if (BITS == 8u) {
    let bytes = vec4<u32>(0u, 8u, 16u, 24u);
    return Values(dequantize(raw.words.x, bytes, unpack2x16float(raw.words.z)),
      dequantize(raw.words.y, bytes, unpack2x16float(raw.words.w)));
  }
  let group = unpack2x16float(raw.words.y);
  return Values(dequantize(raw.words.x, vec4<u32>(0u, 4u, 8u, 12u), group),
    dequantize(raw.words.x, vec4<u32>(16u, 20u, 24u, 28u), group));
}

// Scores of one key against the quad: Σ over dimensions of query · key, this lane's share.
fn partial_score(q_lo: mat4x4<f32>, q_hi: mat4x4<f32>, key: Values) -> vec4<f32> {
  return q_lo * key.lo + q_hi * key.hi;
}

// m with row v (vector v's values) scaled by factors[v].
fn scale_rows(m: mat4x4<f32>, factors: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(m[0] * factors, m[1] * factors, m[2] * factors, m[3] * factors);
}

// p ⊗ values: column d is p · values[d].
fn outer(p: vec4<f32>, values: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(p * values.x, p * values.y, p * values.z, p * values.w);
}

// The full scores of the slot's keys: each lane's partial scores summed over the slot's LANES lanes.
fn slot_scores(partial: KeyScores, local: u32) -> KeyScores {
  var scores = partial;
//#if SUBGROUPS
  if (SUBGROUP_SUM) {
    for (var offset = 1u; offset < LANES; offset <<= 1u) {
      scores.a += subgroupShuffleXor(scores.a, offset);
      scores.b += subgroupShuffleXor(scores.b, offset);
    }
    return scores;
  }
//#endif
  exchange[2u * local] = partial.a;
  exchange[2u * local + 1u] = partial.b;
  workgroupBarrier();
  let first = local / LANES * LANES;
  scores = KeyScores(vec4<f32>(0.0), vec4<f32>(0.0));
  for (var lane = 0u; lane < LANES; lane++) {
    scores.a += exchange[2u * (first + lane)];
    scores.b += exchange[2u * (first + lane) + 1u];
  }
  // Every thread has its sums before the next step's partial scores overwrite them.
  workgroupBarrier();
  return scores;
}

// Σ over slots of two of the lanes' dimensions (columns of Σ p·v); meaningful in slot 0.
fn merge_slots(first: vec4<f32>, second: vec4<f32>, local: u32) -> KeyScores {
  exchange[2u * local] = first;
  exchange[2u * local + 1u] = second;
  workgroupBarrier();
  var merged = KeyScores(vec4<f32>(0.0), vec4<f32>(0.0));
  if (local < LANES) {
    for (var slot = 0u; slot < SLOTS; slot++) {
      merged.a += exchange[2u * (slot * LANES + local)];
      merged.b += exchange[2u * (slot * LANES + local) + 1u];
    }
  }
  workgroupBarrier();
  return merged;
}

@compute @workgroup_size(128)
fn attend(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let partition_index = wg.x;
  let item_at = params.items_at + wg.y * 3u;
  let sequence_at = batch[item_at] * 4u;
  let first_row = batch[item_at + 1u];
  let row_count = batch[item_at + 2u];
  let query_start = batch[sequence_at];
  let query_length = batch[sequence_at + 1u];
  let context_length = batch[sequence_at + 2u];
  let kv_head = wg.z / params.head_chunks;
  let chunk = wg.z % params.head_chunks;
  let group_size = params.q_heads / params.kv_heads;
  let first_head = kv_head * group_size + chunk * params.heads_per_chunk;
  let heads = max(1u, min(params.heads_per_chunk, group_size - chunk * params.heads_per_chunk));
  let vectors = row_count * heads;
  let lane = local % LANES;
  let slot = local / LANES;

  let first_position = context_length - query_length + first_row;
  let lowest = window_start(first_position);
  let partition_start = (lowest / params.partition_size + partition_index) * params.partition_size;
  let partition_end = min(partition_start + params.partition_size, first_position + row_count);
  let reader = Reader(batch[sequence_at + 3u], kv_head, params.block_size * (ROW_WORDS + GROUPS), partition_end);

  // The quad: vector v is row v / heads, head v % heads of the item; beyond `vectors`, nothing.
  let vector_index = vec4<u32>(0u, 1u, 2u, 3u);
  let vector_valid = vector_index < vec4<u32>(vectors);
  let vector_position = vec4<u32>(first_position) + vector_index / heads;
  var vector_lowest = vec4<u32>(0u);
  for (var v = 0u; v < 4u; v++) { vector_lowest[v] = window_start(vector_position[v]); }
  let vector_query = (vec4<u32>(query_start + first_row) + vector_index / heads) * params.q_heads +
    first_head + vector_index % heads;
  // Queries, scaled: column d of q_lo / q_hi is this lane's dimension d (d + 4) of the four vectors.
  var q_lo = mat4x4<f32>();
  var q_hi = mat4x4<f32>();
  if (lane < ACTIVE_LANES) {
    for (var v = 0u; v < 4u; v++) {
      if (!vector_valid[v]) { continue; }
      let at = vector_query[v] * HEAD_DIM;
      for (var d = 0u; d < 4u; d++) {
        q_lo[d][v] = q[at + lane_dim(lane, d)] * params.scale;
        q_hi[d][v] = q[at + lane_dim(lane, d + 4u)] * params.scale;
      }
    }
  }

  // This slot's online softmax: running max, Σ p, and Σ p·v over the lane's dimensions. Each step
  // the slot takes keys step + slot (a) and step + SLOTS + slot (b); their reads for the next step
  // are issued before this step's arithmetic, so they arrive while it runs.
  var running_max = vec4<f32>(NO_SCORE);
  var running_sum = vec4<f32>(0.0);
  var sum_lo = mat4x4<f32>();
  var sum_hi = mat4x4<f32>();
  let first_key = max(partition_start, lowest / STEP_KEYS * STEP_KEYS);
  var key_a = read_raw(true, locate(reader, first_key + slot), lane);
  var key_b = read_raw(true, locate(reader, first_key + SLOTS + slot), lane);
  var value_a = read_raw(false, locate(reader, first_key + slot), lane);
  var value_b = read_raw(false, locate(reader, first_key + SLOTS + slot), lane);
  for (var step = first_key; step < partition_end; step += STEP_KEYS) {
    let ka = decode_raw(key_a);
    let kb = decode_raw(key_b);
    let va = decode_raw(value_a);
    let vb = decode_raw(value_b);
    let at_a = locate(reader, step + STEP_KEYS + slot);
    let at_b = locate(reader, step + STEP_KEYS + SLOTS + slot);
    key_a = read_raw(true, at_a, lane);
    key_b = read_raw(true, at_b, lane);
    value_a = read_raw(false, at_a, lane);
    value_b = read_raw(false, at_b, lane);

    var scores = slot_scores(KeyScores(partial_score(q_lo, q_hi, ka), partial_score(q_lo, q_hi, kb)), local);
    let position_a = vec4<u32>(step + slot);
    let position_b = vec4<u32>(step + SLOTS + slot);
    scores.a = select(vec4<f32>(NO_SCORE), scores.a, visible(position_a, partition_end, vector_valid,
      vector_position, vector_lowest));
    scores.b = select(vec4<f32>(NO_SCORE), scores.b, visible(position_b, partition_end, vector_valid,
      vector_position, vector_lowest));
    let new_max = max(running_max, max(scores.a, scores.b));
    let correction = exp(running_max - new_max);
    running_max = new_max;
    let pa = probability(scores.a, new_max);
    let pb = probability(scores.b, new_max);
    running_sum = running_sum * correction + pa + pb;
    sum_lo = scale_rows(sum_lo, correction) + outer(pa, va.lo) + outer(pb, vb.lo);
    sum_hi = scale_rows(sum_hi, correction) + outer(pa, va.hi) + outer(pb, vb.hi);
  }

  // Merge the slots: each rescales to the workgroup's max, then slot 0 adds them up in slot order.
  if (lane == 0u) {
    slot_max[slot] = running_max;
    slot_sum[slot] = running_sum;
  }
  workgroupBarrier();
  var best = vec4<f32>(NO_SCORE);
  for (var s = 0u; s < SLOTS; s++) { best = max(best, slot_max[s]); }
  var total = vec4<f32>(0.0);
  for (var s = 0u; s < SLOTS; s++) { total += slot_sum[s] * exp(slot_max[s] - best); }
  let weight = exp(running_max - best);
  let lo = scale_rows(sum_lo, weight);
  let hi = scale_rows(sum_hi, weight);
  let merged_01 = merge_slots(lo[0], lo[1], local);
  let merged_23 = merge_slots(lo[2], lo[3], local);
  let merged_45 = merge_slots(hi[0], hi[1], local);
  let merged_67 = merge_slots(hi[2], hi[3], local);
  if (local >= ACTIVE_LANES) { return; }
  let merged = array<vec4<f32>, 8>(merged_01.a, merged_01.b, merged_23.a, merged_23.b, merged_45.a, merged_45.b,
    merged_67.a, merged_67.b);

  for (var v = 0u; v < 4u; v++) {
    if (!vector_valid[v]) { break; }
    let query = vector_query[v];
    let at = (query * params.partitions + partition_index) * (HEAD_DIM + 2u);
    for (var d = 0u; d < 8u; d++) {
      let dim = lane_dim(local, d);
      if (params.partitions == 1u) {
        out[query * HEAD_DIM + dim] = select(0.0, merged[d][v] / total[v], total[v] > 0.0);
      } else {
        partials[at + dim] = merged[d][v];
      }
    }
    if (params.partitions > 1u && local == 0u) {
      partials[at + HEAD_DIM] = best[v];
      partials[at + HEAD_DIM + 1u] = total[v];
    }
  }
}

// Which vectors of the quad see the key at `position` (the same in every component).
fn visible(position: vec4<u32>, end: u32, valid: vec4<bool>, vector_position: vec4<u32>,
  vector_lowest: vec4<u32>) -> vec4<bool> {
  return valid & (position < vec4<u32>(end)) & (position <= vector_position) & (position >= vector_lowest);
}

// First key position a query at `position` may see.
fn window_start(position: u32) -> u32 {
  if (params.window == 0u || position < params.window) { return 0u; }
  return position - params.window + 1u;
}

// exp(score − max), exactly 0 for a key the vector does not see.
fn probability(scores: vec4<f32>, maximum: vec4<f32>) -> vec4<f32> {
  return select(vec4<f32>(0.0), exp(scores - maximum), scores > vec4<f32>(NO_SCORE));
}
