// UdpRun: the JS-visible object for one UDP job (send, receive or both on one socket it owns).
#pragma once
#include <napi.h>

#include <thread>
#include <vector>

#include "registry.h"
#include "udp_loop.h"

namespace bp {

class UdpRun : public Napi::ObjectWrap<UdpRun>, public Stoppable {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit UdpRun(const Napi::CallbackInfo& info);
  ~UdpRun() override;
  void Shutdown() override;

 private:
  void CloseFds();
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Abort(const Napi::CallbackInfo& info);
  Napi::Value Port(const Napi::CallbackInfo& info);
  void OnAllDone(Napi::Env env, Napi::Function cb);

  UdpJob job_;
  int fd_ = -1;
  uint16_t port_ = 0;
  UdpStats tx_, rx_;
  Control ctl_;
  double* counters_ = nullptr;
  Napi::ObjectReference keep_;
  Napi::ThreadSafeFunction tsfn_;
  std::vector<std::thread> threads_;
  std::atomic<int> remaining_{0};
  bool started_ = false;
};

}  // namespace bp
