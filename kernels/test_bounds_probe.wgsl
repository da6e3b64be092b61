// Test probe (test/backends/webgpu-device.test.ts): reads a 4-element workgroup array at the index
// given in io[0] and writes what it read to io[1]. With Dawn's bounds checks (robustness) an index past
// the end is clamped to the last element; without them the read is whatever lies past the array.
//
// Bindings: 0 io: array<u32> [index, result]. Workgroup: 1 thread.

@group(0) @binding(0) var<storage, read_write> io: array<u32>;

var<workgroup> values: array<u32, 4>;

@compute @workgroup_size(1)
fn probe() {
  for (var k = 0u; k < 4u; k++) { values[k] = 50u + k; }
  io[1] = values[io[0]];
}
