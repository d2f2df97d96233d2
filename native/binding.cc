// Module entry: exports the Run class and registers the env cleanup hook that stops running loops when
// the process or a worker thread exits in the middle of a measurement.
#include <napi.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <sys/resource.h>

#include <cstdlib>

#include "run.h"
#include "tcpinfo.h"
#include "tls.h"
#include "udp_run.h"

namespace {

// Raises this process's soft limit on open descriptors to its hard limit and returns {soft, hard} after
// the attempt (600 page connections at a soft limit of 512 starved the next run's sockets
// of descriptors). Node has no setrlimit of its own; getrlimit/setrlimit are GLIBC_2.2.5-era symbols.
Napi::Value RaiseNofile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct rlimit lim {};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return env.Null();
  const rlim_t before = lim.rlim_cur;
  if (lim.rlim_cur < lim.rlim_max) {
    struct rlimit want = lim;
    want.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) lim = want;
  }
  auto num = [&](rlim_t v) {
    return v == RLIM_INFINITY ? Napi::Number::New(env, -1) : Napi::Number::New(env, static_cast<double>(v));
  };
  Napi::Object out = Napi::Object::New(env);
  out.Set("before", num(before));
  out.Set("soft", num(lim.rlim_cur));
  out.Set("hard", num(lim.rlim_max));
  return out;
}

// tlsAvailable(): {ok, why}: whether native TLS can run in this Node (every OpenSSL symbol found, 3.x).
Napi::Value TlsAvailable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  bool ok = bp::tls_available(&why);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", Napi::Boolean::New(env, ok));
  if (!ok) out.Set("why", Napi::String::New(env, why));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // Every stream runs on a thread of its own, and glibc gives threads arenas of their own (up to 8 per
  // core) that keep freed memory: a service running measurements for days crept up by tens of MB with a
  // flat JS heap (the fault soak showed it). Two arenas are plenty for a handful of streams; set once,
  // before any stream thread exists. MALLOC_ARENA_MAX in the environment still wins if set lower.
  static bool once = [] {
    if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
    // Large blocks (chunk sets, receive buffers, Node's big Buffers) straight from mmap and back to the
    // kernel when freed. Without a fixed threshold glibc raises it after each large free, and the next
    // multi-MB blocks come from the heap, where they stay as RSS after the runs (a
    // server grew 80 → 220–366 MB over 12 runs and stayed there).
    if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    return true;
  }();
  (void)once;
#endif
  exports.Set("Run", bp::Run::Define(env));
  exports.Set("UdpRun", bp::UdpRun::Define(env));
  exports.Set("raiseNofile", Napi::Function::New(env, RaiseNofile, "raiseNofile"));
  exports.Set("TlsContext", bp::TlsContext::Define(env));
  exports.Set("TlsSession", bp::TlsSession::Define(env));
  exports.Set("tlsAvailable", Napi::Function::New(env, TlsAvailable, "tlsAvailable"));
  exports.Set("tcpInfo", Napi::Function::New(env, bp::TcpInfo, "tcpInfo"));
  exports.Set("abiVersion", Napi::Number::New(env, 5));
  return exports;
}

}  // namespace

NODE_API_MODULE(bandwidth_probe, Init)
