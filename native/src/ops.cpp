#include "ops.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

#include <mlx/fast.h>
#include <mlx/ops.h>

namespace agent_memory {

namespace {

int param(const std::vector<double>& params, size_t index) {
  if (index >= params.size()) throw std::invalid_argument("mlx op: missing parameter");
  return static_cast<int>(params[index]);
}

mx::array maskIdsPastEnd(const mx::array& ids, int rows, mx::array& valid) {
  auto idsU32 = mx::astype(ids, mx::uint32);
  valid = mx::less(idsU32, mx::array(static_cast<uint32_t>(rows)));
  return mx::where(valid, idsU32, mx::array(0u));
}

/** Rows of a table at ids; ids past the end give rows of zeros. */
mx::array embedding(const mx::array& table, const mx::array& ids) {
  mx::array valid(false);
  auto safe = maskIdsPastEnd(ids, table.shape(0), valid);
  auto rows = asFloat32(mx::take(table, safe, 0));
  return mx::where(mx::expand_dims(valid, -1), rows, mx::array(0.0f));
}

mx::array embeddingQuantized(
    const mx::array& weight,
    const mx::array& scales,
    const mx::array& biases,
    const mx::array& ids,
    int groupSize,
    int bits) {
  mx::array valid(false);
  auto safe = maskIdsPastEnd(ids, weight.shape(0), valid);
  auto rows = mx::dequantize(
      mx::take(weight, safe, 0),
      asFloat32(mx::take(scales, safe, 0)),
      asFloat32(mx::take(biases, safe, 0)),
      groupSize,
      bits,
      "affine",
      std::nullopt,
      mx::float32);
  return mx::where(mx::expand_dims(valid, -1), rows, mx::array(0.0f));
}

/**
 * gelu, tanh approximation (Gemma's gelu_pytorch_tanh): 0.5·x·(1 + tanh(u)) = x·sigmoid(2u), with
 * u = √(2/π)·(x + 0.044715·x³). The sigmoid form does not cancel where 1 + tanh(u) → 0 (large −x).
 */
mx::array geluTanh(const mx::array& x) {
  const float root = std::sqrt(2.0f / std::numbers::pi_v<float>);
  auto cube = mx::multiply(mx::multiply(x, x), x);
  auto u = mx::multiply(mx::array(root), mx::add(x, mx::multiply(mx::array(0.044715f), cube)));
  return mx::multiply(x, mx::sigmoid(mx::multiply(mx::array(2.0f), u)));
}

/**
 * Rotary embedding with angles exact at any position: each pair's rate is a 0.64 fixed-point fraction
 * of a turn (computed in float64 on the JS side), so position · rate mod one turn is an exact
 * wrapping uint64 product, rounded to 24 bits before it becomes an f32 angle. MLX's fast::rope forms
 * position · θ in f32, which is off by up to ~1e-2 rad at position 131,072.
 */
mx::array ropeExact(const mx::array& x, const mx::array& positions, const std::vector<double>& params, RopeAngles& memo) {
  const int dims = param(params, 0);
  const bool traditional = param(params, 1) != 0;
  const int half = dims / 2;
  std::vector<uint64_t> turns(half);
  for (int i = 0; i < half; i++) {
    auto high = static_cast<uint64_t>(params.at(2 + 2 * i));
    auto low = static_cast<uint64_t>(params.at(3 + 2 * i));
    turns[i] = (high << 32) | low;
  }
  auto [cosines, sines] = memo.get(positions, turns);
  const int tokens = x.shape(0);
  const int heads = x.shape(1);
  const int headDim = x.shape(2);
  mx::array rotated(0.0f);
  if (traditional) {
    auto pairs = mx::reshape(mx::slice(x, {0, 0, 0}, {tokens, heads, dims}), {tokens, heads, half, 2});
    auto first = mx::slice(pairs, {0, 0, 0, 0}, {tokens, heads, half, 1});
    auto second = mx::slice(pairs, {0, 0, 0, 1}, {tokens, heads, half, 2});
    auto c = mx::reshape(cosines, {tokens, 1, half, 1});
    auto s = mx::reshape(sines, {tokens, 1, half, 1});
    auto out1 = mx::subtract(mx::multiply(first, c), mx::multiply(second, s));
    auto out2 = mx::add(mx::multiply(first, s), mx::multiply(second, c));
    rotated = mx::reshape(mx::concatenate({out1, out2}, 3), {tokens, heads, dims});
  } else {
    auto first = mx::slice(x, {0, 0, 0}, {tokens, heads, half});
    auto second = mx::slice(x, {0, 0, half}, {tokens, heads, dims});
    auto c = mx::reshape(cosines, {tokens, 1, half});
    auto s = mx::reshape(sines, {tokens, 1, half});
    auto out1 = mx::subtract(mx::multiply(first, c), mx::multiply(second, s));
    auto out2 = mx::add(mx::multiply(first, s), mx::multiply(second, c));
    rotated = mx::concatenate({out1, out2}, 2);
  }
  if (dims == headDim) return rotated;
  return mx::concatenate({rotated, mx::slice(x, {0, 0, dims}, {tokens, heads, headDim})}, 2);
}

/** Index of the largest value per row; lowest on ties; NaN never wins (all NaN: 0). */
mx::array argmaxLowestIndex(const mx::array& x) {
  const int cols = x.shape(-1);
  auto nan = mx::isnan(x);
  auto ranked = mx::where(nan, mx::array(-INFINITY), x);
  auto best = mx::max(ranked, -1, true);
  auto candidate = mx::logical_and(mx::equal(ranked, best), mx::logical_not(nan));
  auto index = mx::min(mx::where(candidate, mx::arange(cols, mx::uint32), mx::array(static_cast<uint32_t>(cols))), -1);
  return mx::where(mx::equal(index, mx::array(static_cast<uint32_t>(cols))), mx::array(0u), index);
}

/**
 * The k largest per row, descending, equal values in index order, NaN after every number, −0 level
 * with +0: each value becomes a uint64 key, its order-preserving bits above (cols − 1 − index), so
 * every key is distinct and sorting keys alone gives the exact order on any device.
 */
std::vector<mx::array> topKOrdered(const mx::array& x, int k) {
  const int cols = x.shape(-1);
  auto zeroed = mx::where(mx::equal(x, mx::array(0.0f)), mx::array(0.0f), x);
  auto bits = mx::view(zeroed, mx::uint32);
  auto negative = mx::greater_equal(bits, mx::array(0x80000000u));
  auto ordered = mx::where(negative, mx::bitwise_invert(bits), mx::bitwise_or(bits, mx::array(0x80000000u)));
  ordered = mx::where(mx::isnan(x), mx::array(0u), ordered);
  auto reverseIndex = mx::subtract(mx::array(static_cast<uint64_t>(cols - 1)), mx::arange(cols, mx::uint64));
  auto keys = mx::bitwise_or(mx::left_shift(mx::astype(ordered, mx::uint64), mx::array(uint64_t{32})), reverseIndex);
  auto top = k == cols ? keys : mx::topk(keys, k, -1);
  // Sorting the complements ascending sorts the keys descending.
  auto descending = mx::bitwise_invert(mx::sort(mx::bitwise_invert(top), -1));
  auto low = mx::astype(mx::bitwise_and(descending, mx::array(uint64_t{0xffffffff})), mx::uint32);
  auto indices = mx::subtract(mx::array(static_cast<uint32_t>(cols - 1)), low);
  auto values = mx::take_along_axis(x, indices, -1);
  return {values, indices};
}

mx::Shape shapeFrom(const std::vector<double>& params, size_t from = 0) {
  mx::Shape shape;
  for (size_t i = from; i < params.size(); i++) shape.push_back(static_cast<int>(params[i]));
  return shape;
}

mx::array sliceAxis(const mx::array& x, int axis, int start, int end) {
  mx::Shape starts(x.ndim(), 0);
  mx::Shape stops = x.shape();
  starts[axis] = start;
  stops[axis] = end;
  return mx::slice(x, starts, stops);
}

}  // namespace

mx::array asFloat32(const mx::array& x) {
  if (x.dtype() == mx::float16 || x.dtype() == mx::bfloat16) return mx::astype(x, mx::float32);
  return x;
}

std::pair<mx::array, mx::array> RopeAngles::get(const mx::array& positions, const std::vector<uint64_t>& turns) {
  for (auto entry = entries_.begin(); entry != entries_.end(); ++entry) {
    if (entry->positions.id() == positions.id() && entry->turns == turns) {
      entries_.splice(entries_.begin(), entries_, entry);
      return {entry->cos, entry->sin};
    }
  }
  const int half = static_cast<int>(turns.size());
  auto rates = mx::array(turns.begin(), {1, half}, mx::uint64);
  auto product = mx::multiply(mx::reshape(mx::astype(positions, mx::uint64), {-1, 1}), rates);
  // Round to the top 24 bits of the turn: exact as an f32 integer, 2^-25 of a turn at most off.
  auto rounded = mx::right_shift(mx::add(product, mx::array(uint64_t{1} << 39)), mx::array(uint64_t{40}));
  constexpr float radiansPerStep = static_cast<float>(2.0 * std::numbers::pi / 16777216.0);
  auto angles = mx::multiply(mx::astype(rounded, mx::float32), mx::array(radiansPerStep));
  entries_.push_front(Entry{positions, turns, mx::cos(angles), mx::sin(angles)});
  if (entries_.size() > 8) entries_.pop_back();
  return {entries_.front().cos, entries_.front().sin};
}

int outputCount(Op op) { return op == Op::TopK ? 2 : 1; }

std::vector<mx::array> runOp(
    Op op,
    const std::vector<mx::array>& in,
    const std::vector<double>& params,
    RopeAngles& ropeAngles) {
  auto input = [&](size_t i) -> const mx::array& {
    if (i >= in.size()) throw std::invalid_argument("mlx op: missing input");
    return in[i];
  };
  switch (op) {
    case Op::Embedding:
      return {embedding(input(0), input(1))};
    case Op::EmbeddingQuantized:
      return {embeddingQuantized(input(0), input(1), input(2), input(3), param(params, 0), param(params, 1))};
    case Op::Matmul:
      return {mx::matmul(input(0), mx::transpose(asFloat32(input(1))))};
    case Op::MatmulQuantized:
      return {mx::quantized_matmul(
          input(0),
          input(1),
          asFloat32(input(2)),
          asFloat32(input(3)),
          true,
          param(params, 0),
          param(params, 1))};
    case Op::RmsNorm:
      return {mx::fast::rms_norm(input(0), asFloat32(input(1)), static_cast<float>(params.at(0)))};
    case Op::Rope:
      return {ropeExact(input(0), input(1), params, ropeAngles)};
    case Op::GeluTanh:
      return {geluTanh(input(0))};
    case Op::Silu:
      return {mx::multiply(input(0), mx::sigmoid(input(0)))};
    case Op::Add:
      return {mx::add(input(0), input(1))};
    case Op::Mul:
      return {mx::multiply(input(0), input(1))};
    case Op::Scale:
      return {mx::multiply(input(0), mx::array(static_cast<float>(params.at(0))))};
    case Op::Softmax:
      return {mx::softmax(input(0), -1, true)};
    case Op::Argmax:
      return {argmaxLowestIndex(input(0))};
    case Op::TopK:
      return topKOrdered(input(0), param(params, 0));
    case Op::Reshape:
      return {mx::reshape(input(0), shapeFrom(params))};
    case Op::Slice:
      return {sliceAxis(input(0), param(params, 0), param(params, 1), param(params, 2))};
    case Op::Concat:
      return {mx::concatenate(in, param(params, 0))};
    case Op::Transpose: {
      std::vector<int> axes;
      for (double axis : params) axes.push_back(static_cast<int>(axis));
      return {mx::transpose(input(0), axes)};
    }
    case Op::Copy:
      return {mx::copy(input(0))};
  }
  throw std::invalid_argument("mlx: unknown op " + std::to_string(static_cast<int>(op)));
}

}  // namespace agent_memory
