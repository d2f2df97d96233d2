// Module entry: exports the Run class and registers the env cleanup hook that stops running loops when
// the process or a worker thread exits in the middle of a measurement.
#include <napi.h>

#include "run.h"
#include "udp_run.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Run", bp::Run::Define(env));
  exports.Set("UdpRun", bp::UdpRun::Define(env));
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  return exports;
}

}  // namespace

NODE_API_MODULE(bandwidth_probe, Init)
