// The Node-API face of the compute thread (worker.h). Every function returns at once: ops get their
// result handles synchronously (the JS side already knows their shapes) and the work is enqueued;
// reads, flushes and the like return Promises settled from the compute thread (bridge.h). This file
// holds tensors, evaluation, memory and the module's setup; bindings_kv.cpp the KV cache and attention.
#include <napi.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include <mlx/device.h>
#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>
#include <mlx/version.h>

#include "bridge.h"
#include "ops.h"
#include "worker.h"

namespace agent_memory {
namespace {

std::mutex environmentsMutex;
int environments = 0;

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
  exportKvBindings(env, exports);
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
