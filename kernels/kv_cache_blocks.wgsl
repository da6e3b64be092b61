// Move a run of whole blocks between the paged KV cache and one packed buffer laid out as the host
// keeps them (an agent file's chunk: each block's words for layer 0 keys, layer 0 values, layer 1
// keys, …). import_blocks scatters a reload's chunk into place; export_blocks gathers an eviction's
// blocks. One dispatch per layer replaces a transfer per block and layer part (32 per block for a
// 1B model), which ran at ~0.5 GB/s on an H200 host either way.
//
// Bindings: 0 params, 1 ids: array<u32> [block_count]: the cache blocks, in the run's order,
//   2 k_cache: array<u32> [block_count_of_cache, block_words] (layout in kv_cache_write.wgsl), 3 v_cache,
//   4 packed: array<u32>: the part for (layer, keys|values) of the block in slot b at
//     (b · 2 · layers + 2 · layer + kind) · block_words; ids[i] is in slot first_slot + i (an import's
//     packed buffer fills over several reads, and its scatter may take the slots in more than one run).
// Workgroup: 256 threads, one word of one block each (keys and values both); 2-D grid past 65,535
//   workgroups, as in elementwise_binary.wgsl.

struct Params {
  block_count: u32, // blocks in this run
  block_words: u32, // words of one block in one layer's key (or value) buffer
  layers: u32,      // layers of the cache (parts per block: 2 · layers)
  layer: u32,       // the layer this dispatch moves
  first_slot: u32,  // the packed slot of ids[0]
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> packed: array<u32>;

struct Word {
  valid: bool,
  cache: u32,  // index of the word in k_cache and v_cache
  packed: u32, // index of its key word in packed (its value word follows one part later)
}

fn word_of(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> Word {
  let i = (wg.y * groups.x + wg.x) * 256u + local;
  if (i >= params.block_count * params.block_words) { return Word(false, 0u, 0u); }
  let run_block = i / params.block_words;
  let word = i % params.block_words;
  let packed_at = ((params.first_slot + run_block) * 2u * params.layers + 2u * params.layer) * params.block_words + word;
  return Word(true, ids[run_block] * params.block_words + word, packed_at);
}

@compute @workgroup_size(256)
fn import_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) local: u32) {
  let w = word_of(wg, groups, local);
  if (!w.valid) { return; }
  k_cache[w.cache] = packed[w.packed];
  v_cache[w.cache] = packed[w.packed + params.block_words];
}

@compute @workgroup_size(256)
fn export_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) local: u32) {
  let w = word_of(wg, groups, local);
  if (!w.valid) { return; }
  packed[w.packed] = k_cache[w.cache];
  packed[w.packed + params.block_words] = v_cache[w.cache];
}
