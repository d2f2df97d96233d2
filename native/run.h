// Run: the JS-visible object for one engine job over several streams (one C++ class per JS object).
#pragma once
#include <napi.h>

#include <memory>
#include <thread>
#include <vector>

#include "registry.h"
#include "stream.h"

namespace bp {

class TlsSession;

class Run : public Napi::ObjectWrap<Run>, public Stoppable {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Run(const Napi::CallbackInfo& info);
  ~Run() override;

  // Called by the env cleanup hook: stop every stream and wait for the threads (no hang at exit).
  void Shutdown() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Abort(const Napi::CallbackInfo& info);
  void OnAllDone(Napi::Env env, Napi::Function cb);
  void Deliver(Napi::Env env, Napi::Function cb);
  void Join();
  void CloseWake();
  void CloseFds();

  Job job_;
  std::vector<StreamSpec> specs_;
  std::vector<TlsSession*> sessions_;  // lent to this run until OnAllDone
  std::vector<Outcome> outcomes_;
  std::vector<std::thread> threads_;
  Control ctl_;
  double* counters_ = nullptr;
  Napi::ObjectReference keep_;  // chunk buffers and the counters array stay alive while threads use them
  Napi::ThreadSafeFunction tsfn_;
  std::atomic<int> remaining_{0};
  bool started_ = false;
};

const char* err_code(Err e);
uint64_t u64(const Napi::Object& o, const char* key, uint64_t def);

}  // namespace bp
