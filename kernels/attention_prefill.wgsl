// Scaled-dot-product attention for many query rows per sequence (prefill), over the paged KV cache
// read in place through each sequence's block table: causal, GQA, optional sliding window, online
// softmax in f32 (flash-attention 2). Same inputs, outputs, positions and partitions as
// attention.wgsl, which keeps the few-row (decode) case; with more than one partition the partial
// results go to attention_combine.wgsl.
//
// One workgroup owns BLOCK_M query vectors: `row_count` consecutive query rows of one sequence × the
// q heads of one head chunk of one kv head (vector v = row (v / heads), head (v % heads)). Their
// scaled queries stay in workgroup memory; the keys are walked in tiles of TILE_KEYS = 4·KEY_THREADS
// positions, aligned to multiples of TILE_KEYS (and partitions to absolute positions), so a vector's
// result does not depend on which other rows share the dispatch. Per tile:
//   (1) scores: thread (tm, tn) owns vectors 4tm…4tm+3 × keys 4tn…4tn+3 of the tile, in registers.
//       Keys come through the staging buffer CHUNK_DIMS dimensions at a time, dequantized there
//       (f16 / 4- / 8-bit → f32), laid out [dim][key] so a thread reads its 4 keys as one vec4;
//   (2) online softmax: per-vector tile max through `partials_max` (KEY_THREADS partial maxima per
//       vector), rescaling of the thread's Σ p share and its output rows; p goes to `probabilities`
//       [key][vector];
//   (3) Σ p·v: the same thread owns vectors 4tm…4tm+3 × dimensions 8tn…8tn+7 of the output, in
//       registers; values come through the staging buffer CHUNK_KEYS keys at a time, [key][dim].
// Σ p is summed across the KEY_THREADS threads of a vector once, at the end, in a fixed order.
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
// Workgroup: THREADS = (BLOCK_M / 4)·KEY_THREADS threads, KEY_THREADS = HEAD_DIM / 8 (thread tn owns
//   8 output dimensions); x = partition, y = work item, z = kv head · head_chunks + head chunk.

override STORAGE: u32;   // 0 f32, 1 f16, 2 quantized
override BITS: u32 = 8u; // quantized only
override HEAD_DIM: u32;  // a multiple of 8
override BLOCK_M: u32;   // query vectors per workgroup, a multiple of 4
override STAGE_VEC4S: u32; // staging buffer: ≥ TILE_KEYS·CHUNK_DIMS / 4 and ≥ CHUNK_KEYS·HEAD_DIM / 4
override CHUNK_DIMS: u32;  // key dimensions per staging step: a multiple of 4 dividing HEAD_DIM
override CHUNK_KEYS: u32;  // value rows per staging step: a multiple of 4 dividing TILE_KEYS
// true: the inner loops run to constant bounds, so a GPU compiler unrolls them; false, for lavapipe
// (Vulkan on the CPU), whose LLVM takes long over unrolled code: the same loops run to uniform bounds.
override UNROLL: bool = true;

override KEY_THREADS: u32 = HEAD_DIM / 8u;
override TILE_KEYS: u32 = 4u * KEY_THREADS;
override THREADS: u32 = BLOCK_M / 4u * KEY_THREADS;
override VECTOR_QUADS: u32 = BLOCK_M / 4u;
override GROUPS: u32 = select(0u, HEAD_DIM / 64u, STORAGE == 2u);
override ROW_WORDS: u32 = HEAD_DIM / select(select(32u / BITS, 2u, STORAGE == 1u), 1u, STORAGE == 0u);

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
  chunk_dims: u32, // CHUNK_DIMS and CHUNK_KEYS again, as uniforms (see UNROLL)
  chunk_keys: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read> batch: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// Scaled queries, [dim][vector / 4].
var<workgroup> query_tile: array<vec4<f32>, BLOCK_M * HEAD_DIM / 4u>;
// exp(score − max), [key][vector / 4].
var<workgroup> probabilities: array<vec4<f32>, BLOCK_M * TILE_KEYS / 4u>;
// Keys [dim][key / 4] of one chunk of dimensions, or values [key][dim / 4] of one chunk of keys.
var<workgroup> stage: array<vec4<f32>, STAGE_VEC4S>;
// Per [vector][key thread]: the tile's partial maxima; at the end, the partial sums.
var<workgroup> partials_max: array<f32, BLOCK_M * KEY_THREADS>;
// Word offsets of each key's row and of its scale/bias words in the head block.
var<workgroup> row_at: array<u32, TILE_KEYS>;
var<workgroup> groups_at: array<u32, TILE_KEYS>;

fn chunk_dims() -> u32 { return select(params.chunk_dims, CHUNK_DIMS, UNROLL); }
fn chunk_keys() -> u32 { return select(params.chunk_keys, CHUNK_KEYS, UNROLL); }

// Values first…first+3 of a row from its storage words (words.x… as the format needs) and, quantized,
// its group's scale/bias word.
fn decode_four(words: vec4<u32>, group_word: u32, first: u32) -> vec4<f32> {
  if (STORAGE == 0u) { return bitcast<vec4<f32>>(words); }
  if (STORAGE == 1u) { return vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y)); }
  let shift = (first * BITS) % 32u;
  let mask = (1u << BITS) - 1u;
  let levels = (vec4<u32>(words.x) >> (vec4<u32>(shift) + vec4<u32>(0u, 1u, 2u, 3u) * BITS)) & vec4<u32>(mask);
  let scale_bias = unpack2x16float(group_word);
  return scale_bias.x * vec4<f32>(levels) + scale_bias.y;
}

fn cache_word(values: bool, index: u32) -> u32 {
  if (values) { return v_cache[index]; }
  return k_cache[index];
}

// Values first…first+3 of a key (values: false) or value row (true) of the cache.
fn row_four(values: bool, row: u32, groups: u32, first: u32) -> vec4<f32> {
  var words = vec4<u32>(0u);
  var group_word = 0u;
  if (STORAGE == 0u) {
    for (var j = 0u; j < 4u; j++) { words[j] = cache_word(values, row + first + j); }
  } else if (STORAGE == 1u) {
    words.x = cache_word(values, row + first / 2u);
    words.y = cache_word(values, row + first / 2u + 1u);
  } else {
    words.x = cache_word(values, row + first * BITS / 32u);
    group_word = cache_word(values, groups + first / 64u);
  }
  return decode_four(words, group_word, first);
}

// First key position a query at `position` may see.
fn window_start(position: u32) -> u32 {
  if (params.window == 0u || position < params.window) { return 0u; }
  return position - params.window + 1u;
}

fn max4(v: vec4<f32>) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
fn sum4(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }

@compute @workgroup_size(THREADS)
fn attend(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let partition_index = wg.x;
  let item_at = params.items_at + wg.y * 3u;
  let sequence_at = batch[item_at] * 4u;
  let first_row = batch[item_at + 1u];
  let row_count = batch[item_at + 2u];
  let query_start = batch[sequence_at];
  let query_length = batch[sequence_at + 1u];
  let context_length = batch[sequence_at + 2u];
  let table_at = batch[sequence_at + 3u];
  let kv_head = wg.z / params.head_chunks;
  let chunk = wg.z % params.head_chunks;
  let group_size = params.q_heads / params.kv_heads;
  let first_head = kv_head * group_size + chunk * params.heads_per_chunk;
  let heads = min(params.heads_per_chunk, group_size - chunk * params.heads_per_chunk);
  let vectors = row_count * heads;
  let head_block_words = params.block_size * (ROW_WORDS + GROUPS);
  let tm = local / KEY_THREADS;
  let tn = local % KEY_THREADS;

  let first_position = context_length - query_length + first_row;
  let lowest = window_start(first_position);
  let partition_start = (lowest / params.partition_size + partition_index) * params.partition_size;
  let partition_end = min(partition_start + params.partition_size, first_position + row_count);

  // Adjacent threads on adjacent vectors: their stores land in different banks.
  for (var index = local; index < BLOCK_M * HEAD_DIM; index += THREADS) {
    let vector = index % BLOCK_M;
    let d = index / BLOCK_M;
    var value = 0.0;
    if (vector < vectors) {
      let row = query_start + first_row + vector / heads;
      let head = first_head + vector % heads;
      value = q[(row * params.q_heads + head) * HEAD_DIM + d] * params.scale;
    }
    query_tile[d * VECTOR_QUADS + vector / 4u][vector % 4u] = value;
  }
  // This thread's 4 vectors: the keys each may see, [window_first, last] (empty past `vectors`).
  var window_first = vec4<u32>(0u);
  var last = vec4<u32>(0u);
  var real = vec4<bool>(false);
  for (var i = 0u; i < 4u; i++) {
    let vector = tm * 4u + i;
    let position = first_position + vector / max(heads, 1u);
    window_first[i] = window_start(position);
    last[i] = position;
    real[i] = vector < vectors;
  }
  // Running max of each of the 4 vectors (the same in the KEY_THREADS threads that share them), this
  // thread's share of Σ p, and Σ p·v of the vectors' dimensions 8tn…8tn+7.
  var running_max = vec4<f32>(NO_SCORE);
  var own_sum = vec4<f32>(0.0);
  var o0a = vec4<f32>(0.0); var o0b = vec4<f32>(0.0);
  var o1a = vec4<f32>(0.0); var o1b = vec4<f32>(0.0);
  var o2a = vec4<f32>(0.0); var o2b = vec4<f32>(0.0);
  var o3a = vec4<f32>(0.0); var o3b = vec4<f32>(0.0);
  let dims_loop = chunk_dims();
  let keys_loop = chunk_keys();

  for (var tile_start = max(partition_start, lowest / TILE_KEYS * TILE_KEYS); tile_start < partition_end; tile_start += TILE_KEYS) {
    if (local < TILE_KEYS) {
      // Keys past the partition read the tile's first key (any written row will do: p is 0 there).
      let position = select(tile_start, tile_start + local, tile_start + local < partition_end);
      let block = batch[table_at + position / params.block_size];
      let offset = position % params.block_size;
      let head_block = (block * params.kv_heads + kv_head) * head_block_words;
      row_at[local] = head_block + offset * ROW_WORDS;
      groups_at[local] = head_block + params.block_size * ROW_WORDS + offset * GROUPS;
    }
    workgroupBarrier();

    // (1) Scores of 4 vectors × 4 keys, CHUNK_DIMS dimensions at a time.
    var s0 = vec4<f32>(0.0); var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0); var s3 = vec4<f32>(0.0);
    for (var chunk_first = 0u; chunk_first < HEAD_DIM; chunk_first += CHUNK_DIMS) {
      // Unit = (key, 4 dimensions), adjacent threads on adjacent keys: their stores into the
      // [dim][key] layout land in different banks (on adjacent dimensions they would all share one).
      for (var unit = local; unit < TILE_KEYS * CHUNK_DIMS / 4u; unit += THREADS) {
        let key = unit % TILE_KEYS;
        let quad = unit / TILE_KEYS;
        let values = row_four(false, row_at[key], groups_at[key], chunk_first + quad * 4u);
        for (var j = 0u; j < 4u; j++) { stage[(quad * 4u + j) * (TILE_KEYS / 4u) + key / 4u][key % 4u] = values[j]; }
      }
      workgroupBarrier();
      // Four dimensions per step, their loads issued before the arithmetic, so latencies overlap.
      for (var d = 0u; d < dims_loop; d += 4u) {
        let q_at = (chunk_first + d) * VECTOR_QUADS + tm;
        let k_at = d * (TILE_KEYS / 4u) + tn;
        let qa = query_tile[q_at];
        let qb = query_tile[q_at + VECTOR_QUADS];
        let qc = query_tile[q_at + 2u * VECTOR_QUADS];
        let qd = query_tile[q_at + 3u * VECTOR_QUADS];
        let ka = stage[k_at];
        let kb = stage[k_at + TILE_KEYS / 4u];
        let kc = stage[k_at + 2u * (TILE_KEYS / 4u)];
        let kd = stage[k_at + 3u * (TILE_KEYS / 4u)];
        s0 += qa.x * ka + qb.x * kb + qc.x * kc + qd.x * kd;
        s1 += qa.y * ka + qb.y * kb + qc.y * kc + qd.y * kd;
        s2 += qa.z * ka + qb.z * kb + qc.z * kc + qd.z * kd;
        s3 += qa.w * ka + qb.w * kb + qc.w * kc + qd.w * kd;
      }
      workgroupBarrier();
    }

    // (2) Mask, tile max per vector, rescale, probabilities.
    let key_position = vec4<u32>(tile_start + tn * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    let in_partition = key_position < vec4<u32>(partition_end);
    s0 = select(vec4<f32>(NO_SCORE), s0, in_partition & (key_position >= vec4<u32>(window_first[0])) & (key_position <= vec4<u32>(last[0])) & vec4<bool>(real[0]));
    s1 = select(vec4<f32>(NO_SCORE), s1, in_partition & (key_position >= vec4<u32>(window_first[1])) & (key_position <= vec4<u32>(last[1])) & vec4<bool>(real[1]));
    s2 = select(vec4<f32>(NO_SCORE), s2, in_partition & (key_position >= vec4<u32>(window_first[2])) & (key_position <= vec4<u32>(last[2])) & vec4<bool>(real[2]));
    s3 = select(vec4<f32>(NO_SCORE), s3, in_partition & (key_position >= vec4<u32>(window_first[3])) & (key_position <= vec4<u32>(last[3])) & vec4<bool>(real[3]));
    let max_at = tm * 4u * KEY_THREADS + tn;
    partials_max[max_at] = max4(s0);
    partials_max[max_at + KEY_THREADS] = max4(s1);
    partials_max[max_at + 2u * KEY_THREADS] = max4(s2);
    partials_max[max_at + 3u * KEY_THREADS] = max4(s3);
    workgroupBarrier();
    var tile_max = vec4<f32>(NO_SCORE);
    for (var t = 0u; t < KEY_THREADS; t++) {
      let at = tm * 4u * KEY_THREADS + t;
      tile_max = max(tile_max, vec4<f32>(partials_max[at], partials_max[at + KEY_THREADS],
        partials_max[at + 2u * KEY_THREADS], partials_max[at + 3u * KEY_THREADS]));
    }
    let new_max = max(running_max, tile_max);
    let correction = exp(running_max - new_max);
    running_max = new_max;
    let p0 = select(vec4<f32>(0.0), exp(s0 - new_max.x), s0 > vec4<f32>(NO_SCORE));
    let p1 = select(vec4<f32>(0.0), exp(s1 - new_max.y), s1 > vec4<f32>(NO_SCORE));
    let p2 = select(vec4<f32>(0.0), exp(s2 - new_max.z), s2 > vec4<f32>(NO_SCORE));
    let p3 = select(vec4<f32>(0.0), exp(s3 - new_max.w), s3 > vec4<f32>(NO_SCORE));
    own_sum = own_sum * correction + vec4<f32>(sum4(p0), sum4(p1), sum4(p2), sum4(p3));
    let p_at = tn * 4u * VECTOR_QUADS + tm;
    probabilities[p_at] = vec4<f32>(p0.x, p1.x, p2.x, p3.x);
    probabilities[p_at + VECTOR_QUADS] = vec4<f32>(p0.y, p1.y, p2.y, p3.y);
    probabilities[p_at + 2u * VECTOR_QUADS] = vec4<f32>(p0.z, p1.z, p2.z, p3.z);
    probabilities[p_at + 3u * VECTOR_QUADS] = vec4<f32>(p0.w, p1.w, p2.w, p3.w);
    o0a *= correction.x; o0b *= correction.x;
    o1a *= correction.y; o1b *= correction.y;
    o2a *= correction.z; o2b *= correction.z;
    o3a *= correction.w; o3b *= correction.w;

    // (3) Σ p·v, CHUNK_KEYS value rows at a time (the first barrier also publishes the probabilities).
    for (var chunk_key = 0u; chunk_key < TILE_KEYS; chunk_key += CHUNK_KEYS) {
      for (var unit = local; unit < CHUNK_KEYS * HEAD_DIM / 4u; unit += THREADS) {
        let key = chunk_key + unit / (HEAD_DIM / 4u);
        let quad = unit % (HEAD_DIM / 4u);
        stage[unit] = row_four(true, row_at[key], groups_at[key], quad * 4u);
      }
      workgroupBarrier();
      // Four value rows per step, loads first.
      for (var k = 0u; k < keys_loop; k += 4u) {
        let p_at = (chunk_key + k) * VECTOR_QUADS + tm;
        let v_at = k * (HEAD_DIM / 4u) + tn * 2u;
        let pa = probabilities[p_at];
        let pb = probabilities[p_at + VECTOR_QUADS];
        let pc = probabilities[p_at + 2u * VECTOR_QUADS];
        let pd = probabilities[p_at + 3u * VECTOR_QUADS];
        let va_low = stage[v_at];
        let va_high = stage[v_at + 1u];
        let vb_low = stage[v_at + HEAD_DIM / 4u];
        let vb_high = stage[v_at + HEAD_DIM / 4u + 1u];
        let vc_low = stage[v_at + HEAD_DIM / 2u];
        let vc_high = stage[v_at + HEAD_DIM / 2u + 1u];
        let vd_low = stage[v_at + 3u * (HEAD_DIM / 4u)];
        let vd_high = stage[v_at + 3u * (HEAD_DIM / 4u) + 1u];
        o0a += pa.x * va_low + pb.x * vb_low + pc.x * vc_low + pd.x * vd_low;
        o0b += pa.x * va_high + pb.x * vb_high + pc.x * vc_high + pd.x * vd_high;
        o1a += pa.y * va_low + pb.y * vb_low + pc.y * vc_low + pd.y * vd_low;
        o1b += pa.y * va_high + pb.y * vb_high + pc.y * vc_high + pd.y * vd_high;
        o2a += pa.z * va_low + pb.z * vb_low + pc.z * vc_low + pd.z * vd_low;
        o2b += pa.z * va_high + pb.z * vb_high + pc.z * vc_high + pd.z * vd_high;
        o3a += pa.w * va_low + pb.w * vb_low + pc.w * vc_low + pd.w * vd_low;
        o3b += pa.w * va_high + pb.w * vb_high + pc.w * vc_high + pd.w * vd_high;
      }
      workgroupBarrier();
    }
  }

  // Σ p of each vector across its KEY_THREADS threads, in a fixed order.
  let sum_at = tm * 4u * KEY_THREADS + tn;
  partials_max[sum_at] = own_sum.x;
  partials_max[sum_at + KEY_THREADS] = own_sum.y;
  partials_max[sum_at + 2u * KEY_THREADS] = own_sum.z;
  partials_max[sum_at + 3u * KEY_THREADS] = own_sum.w;
  workgroupBarrier();
  var total = vec4<f32>(0.0);
  for (var t = 0u; t < KEY_THREADS; t++) {
    let at = tm * 4u * KEY_THREADS + t;
    total += vec4<f32>(partials_max[at], partials_max[at + KEY_THREADS], partials_max[at + 2u * KEY_THREADS],
      partials_max[at + 3u * KEY_THREADS]);
  }
  write_vector(tm * 4u, vectors, heads, query_start + first_row, first_head, partition_index, tn, o0a, o0b, running_max.x, total.x);
  write_vector(tm * 4u + 1u, vectors, heads, query_start + first_row, first_head, partition_index, tn, o1a, o1b, running_max.y, total.y);
  write_vector(tm * 4u + 2u, vectors, heads, query_start + first_row, first_head, partition_index, tn, o2a, o2b, running_max.z, total.z);
  write_vector(tm * 4u + 3u, vectors, heads, query_start + first_row, first_head, partition_index, tn, o3a, o3b, running_max.w, total.w);
}

// Dimensions 8tn…8tn+7 of one vector: normalized into `out`, or as this partition's partial result.
fn write_vector(vector: u32, vectors: u32, heads: u32, first_token: u32, first_head: u32, partition_index: u32, tn: u32,
  low: vec4<f32>, high: vec4<f32>, maximum: f32, sum: f32) {
  if (vector >= vectors) { return; }
  let query = (first_token + vector / heads) * params.q_heads + first_head + vector % heads;
  let d = tn * 8u;
  if (params.partitions == 1u) {
    let at = query * HEAD_DIM + d;
    for (var j = 0u; j < 4u; j++) {
      out[at + j] = select(0.0, low[j] / sum, sum > 0.0);
      out[at + 4u + j] = select(0.0, high[j] / sum, sum > 0.0);
    }
    return;
  }
  let at = (query * params.partitions + partition_index) * (HEAD_DIM + 2u);
  for (var j = 0u; j < 4u; j++) {
    partials[at + d + j] = low[j];
    partials[at + d + 4u + j] = high[j];
  }
  if (tn == 0u) {
    partials[at + HEAD_DIM] = maximum;
    partials[at + HEAD_DIM + 1u] = sum;
  }
}
