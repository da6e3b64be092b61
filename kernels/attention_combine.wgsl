// Merge the per-partition results of split attention (attention.wgsl, flash-decoding): with m_p the
// max score, l_p the sum of exp(score − m_p) and a_p = Σ exp(score − m_p)·v of partition p, the
// output is Σ_p exp(m_p − M)·a_p / Σ_p exp(m_p − M)·l_p with M = max_p m_p. Empty partitions hold
// m_p = −3e38, l_p = 0, a_p = 0 and add exactly nothing.
//
// Bindings: 0 params, 1 partials: array<f32> [tokens, q_heads, partitions, head_dim + 2] (a_p, then m_p
//   and l_p), 2 out: array<f32> [tokens, q_heads, head_dim].
// Workgroup: 64 threads over head_dim for one query vector: x = q head, y = token.

struct Params {
  q_heads: u32,
  head_dim: u32,
  partitions: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let query = wg.y * params.q_heads + wg.x;
  let stride = params.head_dim + 2u;
  let first = query * params.partitions * stride;
  var best = -3.0e38;
  for (var p = 0u; p < params.partitions; p++) {
    best = max(best, partials[first + p * stride + params.head_dim]);
  }
  var total = 0.0;
  for (var p = 0u; p < params.partitions; p++) {
    let at = first + p * stride + params.head_dim;
    total += partials[at + 1u] * exp(partials[at] - best);
  }
  for (var d = local; d < params.head_dim; d += 64u) {
    var sum = 0.0;
    for (var p = 0u; p < params.partitions; p++) {
      let at = first + p * stride;
      sum += partials[at + d] * exp(partials[at + params.head_dim] - best);
    }
    out[query * params.head_dim + d] = select(0.0, sum / total, total > 0.0);
  }
}
