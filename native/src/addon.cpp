// The Node-API face of the compute thread (worker.h). Every function returns at once: ops get their
// result handles synchronously (the JS side already knows their shapes) and the work is enqueued;
// reads, exports and flushes return Promises settled from the compute thread through one
// thread-safe function, which keeps the process alive only while one of them is outstanding.
#include <napi.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <mlx/device.h>
#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>
#include <mlx/version.h>

#include "kv_cache.h"
#include "ops.h"
#include "worker.h"

namespace agent_memory {
namespace {

/** A Promise the compute thread settles: bytes to resolve with (or none), or an error to reject with. */
struct Completion {
  Napi::Promise::Deferred deferred;
  bool resolved = false;
  bool withBytes = false;
  std::vector<uint8_t> bytes;
  std::string error;
};

struct AddonState {
  Napi::ThreadSafeFunction completions;
  int outstanding = 0;
};

std::mutex environmentsMutex;
int environments = 0;

AddonState& state(const Napi::Env& env) { return *env.GetInstanceData<AddonState>(); }

/** A Promise for work the compute thread will finish; `settle` moves its outcome to the main thread. */
std::shared_ptr<Completion> promise(const Napi::Env& env) {
  auto completion = std::shared_ptr<Completion>(new Completion{Napi::Promise::Deferred::New(env)});
  auto& addon = state(env);
  if (addon.outstanding++ == 0) addon.completions.Ref(env);
  return completion;
}

void settle(Napi::ThreadSafeFunction completions, std::shared_ptr<Completion> completion) {
  auto* held = new std::shared_ptr<Completion>(std::move(completion));
  auto status = completions.NonBlockingCall(held, [](Napi::Env env, Napi::Function, std::shared_ptr<Completion>* data) {
    std::unique_ptr<std::shared_ptr<Completion>> owner(data);
    if (env == nullptr) return;
    Completion& done = **data;
    auto& addon = state(env);
    if (--addon.outstanding == 0) addon.completions.Unref(env);
    if (!done.resolved) {
      done.deferred.Reject(Napi::Error::New(env, done.error).Value());
    } else if (done.withBytes) {
      auto buffer = Napi::ArrayBuffer::New(env, done.bytes.size());
      if (!done.bytes.empty()) std::memcpy(buffer.Data(), done.bytes.data(), done.bytes.size());
      done.deferred.Resolve(buffer);
    } else {
      done.deferred.Resolve(env.Undefined());
    }
  });
  if (status != napi_ok) delete held;
}

std::vector<double> numbers(const Napi::Value& value) {
  std::vector<double> out;
  if (!value.IsArray()) return out;
  auto array = value.As<Napi::Array>();
  out.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) out.push_back(array.Get(i).As<Napi::Number>().DoubleValue());
  return out;
}

std::vector<Handle> handles(const Napi::Value& value) {
  std::vector<Handle> out;
  for (double number : numbers(value)) out.push_back(static_cast<Handle>(number));
  return out;
}

Handle handleAt(const Napi::CallbackInfo& info, size_t index) {
  return static_cast<Handle>(info[index].As<Napi::Number>().Int64Value());
}

int intAt(const Napi::CallbackInfo& info, size_t index) { return info[index].As<Napi::Number>().Int32Value(); }

mx::Dtype dtypeFromCode(int code) {
  switch (code) {
    case 0:
      return mx::float32;
    case 1:
      return mx::float16;
    case 2:
      return mx::bfloat16;
    case 3:
      return mx::uint32;
    default:
      return mx::int32;
  }
}

/** The bytes of a typed array or Uint8Array, copied: the JS side may reuse its buffer at once. */
std::pair<void*, size_t> copyBytes(const Napi::Value& value) {
  auto typed = value.As<Napi::TypedArray>();
  size_t size = typed.ByteLength();
  auto source = static_cast<const uint8_t*>(typed.ArrayBuffer().Data()) + typed.ByteOffset();
  void* copy = std::malloc(size > 0 ? size : 1);
  if (size > 0) std::memcpy(copy, source, size);
  return {copy, size};
}

std::string describe(const std::exception& error) {
  if (dynamic_cast<const TaskError*>(&error)) return error.what();
  return std::string("mlx: ") + error.what();
}

// upload(data, shape, dtypeCode) → handle
Napi::Value Upload(const Napi::CallbackInfo& info) {
  auto [data, size] = copyBytes(info[0]);
  mx::Shape shape;
  for (double dim : numbers(info[1])) shape.push_back(static_cast<int>(dim));
  auto dtype = dtypeFromCode(intAt(info, 2));
  Handle out = Worker::instance().reserve();
  Worker::instance().enqueue([out, data, shape, dtype](Arrays& arrays) {
    arrays.put(out, mx::array(data, shape, dtype, [](void* pointer) { std::free(pointer); }));
  });
  return Napi::Number::New(info.Env(), static_cast<double>(out));
}

// op(code, inputs, params) → first output handle (multi-output ops take consecutive handles)
Napi::Value RunOp(const Napi::CallbackInfo& info) {
  auto op = static_cast<Op>(intAt(info, 0));
  auto inputs = handles(info[1]);
  auto params = numbers(info[2]);
  const int count = outputCount(op);
  Handle out = Worker::instance().reserve(count);
  Worker::instance().enqueue([op, inputs, params, out, count](Arrays& arrays) {
    try {
      std::vector<mx::array> in;
      in.reserve(inputs.size());
      for (Handle handle : inputs) in.push_back(arrays.get(handle));
      auto results = runOp(op, in, params, arrays.ropeAngles);
      for (int i = 0; i < count; i++) arrays.put(out + i, results.at(i));
    } catch (const std::exception& error) {
      for (int i = 0; i < count; i++) arrays.fail(out + i, describe(error));
    }
  });
  return Napi::Number::New(info.Env(), static_cast<double>(out));
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Handle handle = handleAt(info, 0);
  Worker::instance().enqueue([handle](Arrays& arrays) { arrays.erase(handle); });
  return info.Env().Undefined();
}

// read(handle) → Promise<ArrayBuffer>, 16-bit floats widened to f32, row-major
Napi::Value Read(const Napi::CallbackInfo& info) {
  Handle handle = handleAt(info, 0);
  auto completion = promise(info.Env());
  auto completions = state(info.Env()).completions;
  Worker::instance().enqueue([handle, completion, completions](Arrays& arrays) {
    try {
      auto value = asFloat32(arrays.get(handle));
      value = mx::contiguous(value);
      mx::eval(value);
      auto* data = value.data<uint8_t>();
      completion->bytes.assign(data, data + value.nbytes());
      completion->withBytes = true;
      completion->resolved = true;
    } catch (const std::exception& error) {
      completion->error = describe(error);
    }
    Worker::instance().publish(arrays);
    settle(completions, completion);
  });
  return completion->deferred.Promise();
}

// flush() → Promise<void>: evaluates every array not yet evaluated (recorded work, KV writes)
Napi::Value Flush(const Napi::CallbackInfo& info) {
  auto completion = promise(info.Env());
  auto completions = state(info.Env()).completions;
  Worker::instance().enqueue([completion, completions](Arrays& arrays) {
    try {
      auto pending = arrays.pending();
      if (!pending.empty()) mx::eval(pending);
      completion->resolved = true;
    } catch (const std::exception& error) {
      completion->error = describe(error);
    }
    Worker::instance().publish(arrays);
    settle(completions, completion);
  });
  return completion->deferred.Promise();
}

// kvCreate([layers, kvHeads, headDim, blockSize, blockCount, storage, bits]) → handle
Napi::Value KvCreate(const Napi::CallbackInfo& info) {
  auto fields = numbers(info[0]);
  KvSpec spec{
      static_cast<int>(fields.at(0)),
      static_cast<int>(fields.at(1)),
      static_cast<int>(fields.at(2)),
      static_cast<int>(fields.at(3)),
      static_cast<int>(fields.at(4)),
      static_cast<int>(fields.at(5)),
      static_cast<int>(fields.at(6))};
  Handle cache = Worker::instance().reserve();
  Worker::instance().enqueue([cache, spec](Arrays& arrays) {
    try {
      arrays.caches.emplace(cache, std::make_unique<KvStore>(spec));
    } catch (const std::exception& error) {
      // Out of memory, typically: a cache that exists and says why, rather than one that is missing.
      auto failed = std::make_unique<KvStore>(KvSpec{0, spec.kvHeads, spec.headDim, spec.blockSize, 0, spec.storage, spec.bits});
      failed->fail("KV cache could not be created: " + describe(error));
      arrays.caches.emplace(cache, std::move(failed));
    }
  });
  return Napi::Number::New(info.Env(), static_cast<double>(cache));
}

KvStore& cacheOf(Arrays& arrays, Handle cache) {
  auto found = arrays.caches.find(cache);
  if (found == arrays.caches.end()) throw TaskError("KV cache: used after dispose()");
  return *found->second;
}

// kvWrite(cache, layer, keys, values, slots)
Napi::Value KvWrite(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  int layer = intAt(info, 1);
  Handle keys = handleAt(info, 2), values = handleAt(info, 3), slots = handleAt(info, 4);
  Worker::instance().enqueue([=](Arrays& arrays) {
    auto found = arrays.caches.find(cache);
    if (found == arrays.caches.end()) return;
    try {
      found->second->write(layer, arrays.get(keys), arrays.get(values), arrays.get(slots));
    } catch (const std::exception& error) {
      found->second->fail("KV cache write failed: " + describe(error));
    }
  });
  return info.Env().Undefined();
}

// kvCopy(cache, [source, destination, source, destination, …])
Napi::Value KvCopy(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  auto flat = numbers(info[1]);
  std::vector<std::pair<int, int>> pairs;
  for (size_t i = 0; i + 1 < flat.size(); i += 2) pairs.emplace_back(static_cast<int>(flat[i]), static_cast<int>(flat[i + 1]));
  Worker::instance().enqueue([cache, pairs](Arrays& arrays) {
    auto found = arrays.caches.find(cache);
    if (found == arrays.caches.end()) return;
    try {
      found->second->copyBlocks(pairs);
    } catch (const std::exception& error) {
      found->second->fail("KV cache copyBlocks failed: " + describe(error));
    }
  });
  return info.Env().Undefined();
}

// kvExport(cache, block) → Promise<ArrayBuffer>
Napi::Value KvExport(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  int block = intAt(info, 1);
  auto completion = promise(info.Env());
  auto completions = state(info.Env()).completions;
  Worker::instance().enqueue([cache, block, completion, completions](Arrays& arrays) {
    try {
      completion->bytes = cacheOf(arrays, cache).exportBlock(block);
      completion->withBytes = true;
      completion->resolved = true;
    } catch (const std::exception& error) {
      completion->error = describe(error);
    }
    settle(completions, completion);
  });
  return completion->deferred.Promise();
}

// kvImport(cache, block, bytes)
Napi::Value KvImport(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  int block = intAt(info, 1);
  auto [data, size] = copyBytes(info[2]);
  auto bytes = std::make_shared<std::vector<uint8_t>>(static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  std::free(data);
  Worker::instance().enqueue([cache, block, bytes](Arrays& arrays) {
    auto found = arrays.caches.find(cache);
    if (found == arrays.caches.end()) return;
    try {
      found->second->importBlock(block, *bytes);
    } catch (const std::exception& error) {
      found->second->fail("KV cache importBlock failed: " + describe(error));
    }
  });
  return info.Env().Undefined();
}

Napi::Value KvFree(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  Worker::instance().enqueue([cache](Arrays& arrays) { arrays.caches.erase(cache); });
  return info.Env().Undefined();
}

// attentionPrepare(Int32Array: count, then per sequence queryStart, queryLength, contextLength,
// tableLength, table…) → handle
Napi::Value AttentionPrepare(const Napi::CallbackInfo& info) {
  auto words = info[0].As<Napi::Int32Array>();
  std::vector<AttentionSequence> sequences;
  size_t at = 0;
  const size_t count = static_cast<size_t>(words[at++]);
  for (size_t i = 0; i < count; i++) {
    AttentionSequence sequence{words[at], words[at + 1], words[at + 2], {}};
    const int tableLength = words[at + 3];
    at += 4;
    for (int b = 0; b < tableLength; b++) sequence.blockTable.push_back(words[at++]);
    sequences.push_back(std::move(sequence));
  }
  Handle batch = Worker::instance().reserve();
  auto shared = std::make_shared<std::vector<AttentionSequence>>(std::move(sequences));
  Worker::instance().enqueue([batch, shared](Arrays& arrays) {
    arrays.batches.emplace(batch, std::make_unique<AttentionBatch>(std::move(*shared)));
  });
  return Napi::Number::New(info.Env(), static_cast<double>(batch));
}

// attention(q, cache, layer, batch, scale, window) → handle
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Handle q = handleAt(info, 0), cache = handleAt(info, 1);
  int layer = intAt(info, 2);
  Handle batch = handleAt(info, 3);
  float scale = static_cast<float>(info[4].As<Napi::Number>().DoubleValue());
  int window = intAt(info, 5);
  Handle out = Worker::instance().reserve();
  Worker::instance().enqueue([=](Arrays& arrays) {
    try {
      auto found = arrays.batches.find(batch);
      if (found == arrays.batches.end()) throw TaskError("attention: the prepared batch was used after dispose()");
      arrays.put(out, found->second->attend(arrays.get(q), cacheOf(arrays, cache), layer, scale, window));
    } catch (const std::exception& error) {
      arrays.fail(out, describe(error));
    }
  });
  return Napi::Number::New(info.Env(), static_cast<double>(out));
}

Napi::Value AttentionFree(const Napi::CallbackInfo& info) {
  Handle batch = handleAt(info, 0);
  Worker::instance().enqueue([batch](Arrays& arrays) { arrays.batches.erase(batch); });
  return info.Env().Undefined();
}

// memory() → MLX's figures as last published by the compute thread, and live handles
Napi::Value Memory(const Napi::CallbackInfo& info) {
  const auto& counters = Worker::instance().counters();
  auto out = Napi::Object::New(info.Env());
  auto set = [&](const char* name, uint64_t value) {
    out.Set(name, Napi::Number::New(info.Env(), static_cast<double>(value)));
  };
  set("active", counters.active.load());
  set("peak", counters.peak.load());
  set("cache", counters.cache.load());
  set("limit", counters.limit.load());
  set("handles", counters.handles.load());
  return out;
}

// setLimits(memoryBytes | -1, cacheBytes | -1) → Promise<void>, once applied on the compute thread
Napi::Value SetLimits(const Napi::CallbackInfo& info) {
  double memory = info[0].As<Napi::Number>().DoubleValue();
  double cache = info[1].As<Napi::Number>().DoubleValue();
  auto completion = promise(info.Env());
  auto completions = state(info.Env()).completions;
  Worker::instance().enqueue([memory, cache, completion, completions](Arrays& arrays) {
    if (memory >= 0) mx::set_memory_limit(static_cast<size_t>(memory));
    if (cache >= 0) mx::set_cache_limit(static_cast<size_t>(cache));
    completion->resolved = true;
    Worker::instance().publish(arrays);
    settle(completions, completion);
  });
  return completion->deferred.Promise();
}

Napi::Value Failure(const Napi::CallbackInfo& info) {
  auto fatal = Worker::instance().fatal();
  if (fatal.empty()) return info.Env().Null();
  return Napi::String::New(info.Env(), fatal);
}

// describe() → Promise<string>: MLX's version and the device it computes on
Napi::Value Describe(const Napi::CallbackInfo& info) {
  auto completion = promise(info.Env());
  auto completions = state(info.Env()).completions;
  Worker::instance().enqueue([completion, completions](Arrays&) {
    try {
      auto device = mx::default_device();
      std::string text = std::string("MLX ") + mx::version() + " on " +
          (device.type == mx::Device::DeviceType::gpu ? "GPU" : "CPU");
      completion->bytes.assign(text.begin(), text.end());
      completion->withBytes = true;
      completion->resolved = true;
    } catch (const std::exception& error) {
      completion->error = describe(error);
    }
    settle(completions, completion);
  });
  return completion->deferred.Promise();
}

void Cleanup(AddonState* addon) {
  addon->completions.Release();
  bool last;
  {
    std::lock_guard lock(environmentsMutex);
    last = --environments == 0;
  }
  if (last) Worker::instance().stop();
}

Napi::Object Setup(Napi::Env env, Napi::Object exports) {
  auto* addon = new AddonState();
  addon->completions = Napi::ThreadSafeFunction::New(
      env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "mlx-completions", 0, 1);
  addon->completions.Unref(env);
  env.SetInstanceData<AddonState>(addon);
  {
    std::lock_guard lock(environmentsMutex);
    environments++;
  }
  env.AddCleanupHook([addon] { Cleanup(addon); });

  exports.Set("upload", Napi::Function::New(env, Upload));
  exports.Set("op", Napi::Function::New(env, RunOp));
  exports.Set("free", Napi::Function::New(env, Free));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("flush", Napi::Function::New(env, Flush));
  exports.Set("kvCreate", Napi::Function::New(env, KvCreate));
  exports.Set("kvWrite", Napi::Function::New(env, KvWrite));
  exports.Set("kvCopy", Napi::Function::New(env, KvCopy));
  exports.Set("kvExport", Napi::Function::New(env, KvExport));
  exports.Set("kvImport", Napi::Function::New(env, KvImport));
  exports.Set("kvFree", Napi::Function::New(env, KvFree));
  exports.Set("attentionPrepare", Napi::Function::New(env, AttentionPrepare));
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionFree", Napi::Function::New(env, AttentionFree));
  exports.Set("memory", Napi::Function::New(env, Memory));
  exports.Set("setLimits", Napi::Function::New(env, SetLimits));
  exports.Set("failure", Napi::Function::New(env, Failure));
  exports.Set("describe", Napi::Function::New(env, Describe));
  return exports;
}

}  // namespace
}  // namespace agent_memory

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return agent_memory::Setup(env, exports); }

NODE_API_MODULE(agent_memory_mlx, Init)
