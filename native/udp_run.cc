#include "udp_run.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <stdexcept>

#include "run.h"

namespace bp {

Napi::Function UdpRun::Define(Napi::Env env) {
  return DefineClass(env, "UdpRun",
                     {InstanceMethod("start", &UdpRun::Start), InstanceMethod("abort", &UdpRun::Abort),
                      InstanceAccessor("port", &UdpRun::Port, nullptr)});
}

// new UdpRun(spec): opens and binds the socket at once, so the caller learns the local port (and any
// bind error) before it tells the peer. The spec was validated in TypeScript.
UdpRun::UdpRun(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpRun>(info) {
  Napi::Env env = info.Env();
  Napi::Object s = info[0].As<Napi::Object>();
  keep_ = Napi::Persistent(s);
  job_.bind_host = s.Get("bindHost").As<Napi::String>().Utf8Value();
  job_.bind_port = static_cast<uint16_t>(u64(s, "bindPort", 0));
  job_.peer_host = s.Get("peerHost").As<Napi::String>().Utf8Value();
  job_.peer_port = static_cast<uint16_t>(u64(s, "peerPort", 0));
  job_.connect_peer = s.Get("connect").As<Napi::Boolean>().Value();
  if (s.Has("lockPort")) job_.lock_port = s.Get("lockPort").As<Napi::Boolean>().Value();
  job_.family = static_cast<int>(u64(s, "family", 4));
  job_.send = s.Get("send").As<Napi::Boolean>().Value();
  job_.receive = s.Get("receive").As<Napi::Boolean>().Value();
  job_.payload = static_cast<uint32_t>(u64(s, "payload", 1472));
  job_.pace_bytes = static_cast<uint32_t>(u64(s, "paceBytes", job_.payload));
  job_.rate_bps = u64(s, "rateBps", 0);
  job_.seq_start = static_cast<uint32_t>(u64(s, "seqStart", 0));
  Napi::Value ts = s.Get("tsOffset");
  job_.ts_offset = ts.IsNumber() ? ts.As<Napi::Number>().Int32Value() : -1;
  job_.duration_ns = u64(s, "durationNs", 0);
  job_.sample_ns = u64(s, "sampleNs", 100000000);
  counters_ = reinterpret_cast<double*>(s.Get("counters").As<Napi::Float64Array>().Data());
  try {
    fd_ = udp_open(job_, &port_);
  } catch (const std::runtime_error& e) {
    throw Napi::Error::New(env, std::string("BP_ERR_CONNECT: ") + e.what());
  }
  ctl_.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  track(env, this);
}

UdpRun::~UdpRun() {
  forget(this);
  Shutdown();
  CloseFds();
}

// The socket and the eventfd are closed as soon as both threads are done (not when the GC collects this
// object: until then the port would stay bound and the descriptors counted). JS thread only.
void UdpRun::CloseFds() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (ctl_.wake_fd >= 0) close(ctl_.wake_fd);
  ctl_.wake_fd = -1;
}

void UdpRun::Shutdown() {
  ctl_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

Napi::Value UdpRun::Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }

// start(t0, callback): a send thread and/or a receive thread on the one socket; the callback gets the
// statistics on the JS thread when both are done (duration over, or aborted).
Napi::Value UdpRun::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (started_) throw Napi::Error::New(env, "BP_ERR_ENGINE: run already started");
  started_ = true;
  bool lossless;
  job_.t0 = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  Ref();
  tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "bandwidth-probe-udp", 0, 1);
  int n = (job_.send ? 1 : 0) + (job_.receive ? 1 : 0);
  remaining_.store(n);
  auto finish = [this] {
    if (remaining_.fetch_sub(1) == 1) {
      tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function cb) { OnAllDone(env, cb); });
      tsfn_.Release();
    }
  };
  if (job_.send) threads_.emplace_back([this, finish] { udp_send_loop(job_, fd_, ctl_, counters_, tx_); finish(); });
  if (job_.receive) threads_.emplace_back([this, finish] { udp_receive_loop(job_, fd_, ctl_, counters_, rx_); finish(); });
  if (n == 0) {
    remaining_.store(1);
    finish();
  }
  return env.Undefined();
}

void UdpRun::OnAllDone(Napi::Env env, Napi::Function cb) {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  forget(this);
  CloseFds();
  if (env == nullptr || cb.IsEmpty()) return;
  try {
    auto points = [&](const std::vector<uint64_t>& v) {
      auto a = Napi::Float64Array::New(env, v.size());
      for (size_t k = 0; k < v.size(); k++) a[k] = double(v[k]);
      return a;
    };
    Napi::Object r = Napi::Object::New(env);
    r.Set("sentPackets", double(tx_.sent_packets));
    r.Set("sentBytes", double(tx_.sent_bytes));
    r.Set("packets", double(rx_.packets));
    r.Set("bytes", double(rx_.bytes));
    r.Set("lost", double(rx_.lost));
    r.Set("duplicates", double(rx_.duplicates));
    r.Set("reordered", double(rx_.reordered));
    r.Set("foreign", double(rx_.foreign));
    r.Set("jitterNs", rx_.jitter_ns);
    r.Set("iatJitterNs", rx_.iat_jitter_ns);
    r.Set("kernelTimestamps", rx_.kernel_ts);
    r.Set("txPoints", points(tx_.tx_points));
    r.Set("rxPoints", points(rx_.rx_points));
    const UdpStats& bad = tx_.err != Err::Ok ? tx_ : rx_;
    if (bad.err != Err::Ok) {
      r.Set("code", err_code(bad.err));
      r.Set("message", bad.message);
    }
    cb.Call({r});
    Unref();
  } catch (const Napi::Error&) {
  }
}

Napi::Value UdpRun::Abort(const Napi::CallbackInfo& info) {
  ctl_.stop();
  return info.Env().Undefined();
}

}  // namespace bp
