// Scatter a run of blocks, as the host holds them (an agent file's chunk: each block's words for
// layer 0 keys, layer 0 values, layer 1 keys, …), from one staging buffer into one layer's key and
// value buffers of the paged KV cache at the blocks' own ids. One writeBuffer of the whole chunk and
// one dispatch per layer replace a writeBuffer per block and layer part.
//
// Bindings: 0 params,
//   1 staging: array<u32>: block_count block ids, then at data_at the blocks' words back to back
//     (block b's part for (layer, keys|values) at data_at + (b · 2 · layers + 2 · layer + kind) · block_words),
//   2 k_cache: array<u32> [block_count_of_cache, block_words] (layout in kv_cache_write.wgsl), 3 v_cache.
// Workgroup: 256 threads, one word of one block each (keys and values both); 2-D grid past 65,535
//   workgroups, as in elementwise_binary.wgsl.

struct Params {
  block_count: u32, // blocks in this run
  block_words: u32, // words of one block in one layer's key (or value) buffer
  layers: u32,      // layers of the cache (parts per block: 2 · layers)
  layer: u32,       // the layer this dispatch writes
  data_at: u32,     // first word of the blocks' data in staging
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> staging: array<u32>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>;

@compute @workgroup_size(256)
fn import_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) local: u32) {
  let i = (wg.y * groups.x + wg.x) * 256u + local;
  if (i >= params.block_count * params.block_words) { return; }
  let run_block = i / params.block_words;
  let word = i % params.block_words;
  let keys_at = params.data_at + (run_block * 2u * params.layers + 2u * params.layer) * params.block_words + word;
  let destination = staging[run_block] * params.block_words + word;
  k_cache[destination] = staging[keys_at];
  v_cache[destination] = staging[keys_at + params.block_words];
}
