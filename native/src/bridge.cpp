#include "bridge.h"

#include <cstdlib>
#include <cstring>

namespace agent_memory {

AddonState& state(const Napi::Env& env) { return *env.GetInstanceData<AddonState>(); }

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

}  // namespace agent_memory
