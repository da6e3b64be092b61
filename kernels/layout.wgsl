// Strided copy of 4-byte elements (f32/u32/i32 moved as raw bits), the one kernel behind slice,
// concat and transpose: element (c0, c1, c2, c3) of a copy box of shape `box` goes from
// source[source_offset + Σ c_d·source_stride_d] to destination[destination_offset + Σ c_d·
// destination_stride_d]. Offsets are element counts, not binding offsets: storage bindings must start
// at multiples of 256 bytes, so tensors are always bound whole.
//
// Bindings: 0 params (uniform Params), 1 source: array<u32>, 2 destination: array<u32>.
// Workgroup: 256 threads along x, one element of the box each, in row-major box order (so writes are
// contiguous for slice and concat). Element index = (wg.y·num_wg.x + wg.x)·256 + local.x.

struct Params {
  count: u32,  // elements in the box: box0·box1·box2·box3
  source_offset: u32,
  destination_offset: u32,
  box1: u32,   // box dims 1…3; dim 0 is implied by count. Unused leading dims are 1.
  box2: u32,
  box3: u32,
  source_stride0: u32,
  source_stride1: u32,
  source_stride2: u32,
  source_stride3: u32,
  destination_stride0: u32,
  destination_stride1: u32,
  destination_stride2: u32,
  destination_stride3: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> source: array<u32>;
@group(0) @binding(2) var<storage, read_write> destination: array<u32>;

@compute @workgroup_size(256)
fn strided_copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) local: u32) {
  let index = (wg.y * groups.x + wg.x) * 256u + local;
  if (index >= params.count) { return; }
  var rest = index;
  let c3 = rest % params.box3;
  rest /= params.box3;
  let c2 = rest % params.box2;
  rest /= params.box2;
  let c1 = rest % params.box1;
  let c0 = rest / params.box1;
  let read_at = params.source_offset + c0 * params.source_stride0 + c1 * params.source_stride1
           + c2 * params.source_stride2 + c3 * params.source_stride3;
  let write_at = params.destination_offset + c0 * params.destination_stride0 + c1 * params.destination_stride1
         + c2 * params.destination_stride2 + c3 * params.destination_stride3;
  destination[write_at] = source[read_at];
}
