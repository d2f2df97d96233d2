#include "run.h"

#include "registry.h"
#include "tls.h"

#include <fcntl.h>
#include <cstring>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>


namespace bp {

const char* err_code(Err e) {
  switch (e) {
    case Err::Ok: return "";
    case Err::Aborted: return "BP_ERR_ABORTED";
    case Err::Stalled: return "BP_ERR_STALLED";
    case Err::Timeout: return "BP_ERR_TIMEOUT";
    case Err::PeerClosed: return "BP_ERR_PEER_CLOSED";
    case Err::Protocol: return "BP_ERR_PROTOCOL";
    case Err::Io: return "BP_ERR_ENGINE";
  }
  return "BP_ERR_ENGINE";
}

namespace {

}  // namespace

uint64_t u64(const Napi::Object& o, const char* key, uint64_t def) {
  Napi::Value v = o.Get(key);
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return static_cast<uint64_t>(v.As<Napi::Number>().DoubleValue());
  return def;
}

namespace {

Slice slice(const Napi::Value& v) {
  auto b = v.As<Napi::Buffer<uint8_t>>();
  return Slice{b.Data(), b.Length()};
}

}  // namespace

Napi::Function Run::Define(Napi::Env env) {
  return DefineClass(env, "Run", {InstanceMethod("start", &Run::Start), InstanceMethod("abort", &Run::Abort)});
}

// new Run(spec). The spec was validated in TypeScript (src/engine/native.ts); native code trusts it.
Run::Run(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Run>(info) {
  Napi::Env env = info.Env();
  Napi::Object spec = info[0].As<Napi::Object>();
  keep_ = Napi::Persistent(spec);
  job_.mode = spec.Get("mode").As<Napi::String>().Utf8Value() == "send" ? Mode::Send : Mode::Receive;
  job_.framing = spec.Get("framing").As<Napi::String>().Utf8Value() == "raw" ? Framing::Raw : Framing::Rmbt;
  std::string ws = spec.Get("ws").As<Napi::String>().Utf8Value();
  job_.ws = ws == "client" ? WsRole::Client : ws == "server" ? WsRole::Server : WsRole::None;
  job_.chunk_size = static_cast<uint32_t>(u64(spec, "chunkSize", 4096));
  // The framing counts chunk boundaries by offset: a zero chunk size would never advance.
  if (job_.framing == Framing::Rmbt && job_.chunk_size == 0) {
    Napi::TypeError::New(env, "chunkSize must be at least 1 for RMBT framing").ThrowAsJavaScriptException();
    return;
  }
  job_.sample_ns = u64(spec, "sampleNs", 10000000);
  job_.idle_ns = u64(spec, "idleNs", 10000000000ull);
  job_.max_ns = u64(spec, "maxNs", 60000000000ull);
  job_.report_ns = u64(spec, "reportNs", 0);
  job_.duration_ns = u64(spec, "durationNs", 0);
  job_.count = u64(spec, "count", 0);
  job_.payload_size = static_cast<uint32_t>(u64(spec, "payloadSize", job_.chunk_size));
  job_.trunc = spec.Get("trunc").ToBoolean().Value();
  job_.lowat = spec.Get("lowat").ToBoolean().Value();
  job_.rate_bps = u64(spec, "rateBps", 0);
  job_.count_inbound = spec.Get("countInbound").ToBoolean().Value();
  job_.text_max = static_cast<uint32_t>(u64(spec, "textMax", 0));
  job_.max_frame = u64(spec, "maxFrame", 0);
  job_.scale_divisor = static_cast<uint32_t>(u64(spec, "scaleDivisor", 0));
  job_.close_wait_ns = u64(spec, "closeWaitNs", 0);
  counters_ = reinterpret_cast<double*>(spec.Get("counters").As<Napi::Float64Array>().Data());

  Napi::Array streams = spec.Get("streams").As<Napi::Array>();
  for (uint32_t i = 0; i < streams.Length(); i++) {
    Napi::Object s = streams.Get(i).As<Napi::Object>();
    StreamSpec ss;
    // The stream threads work on their own duplicate of the socket, never on Node's descriptor number:
    // Node may close its number the moment a run is aborted (a socket destroyed mid-run), and a number
    // closed there can be reused at once by the next open() (the SQLite file, the MQTT socket). The
    // duplicate keeps the connection alive until the threads are joined and is closed only after that
    // (CloseFds), so no thread ever reads or writes a number it does not own.
    int orig = s.Get("fd").As<Napi::Number>().Int32Value();
    // The raw syscall, not glibc's fcntl(): on 32-bit ARM with 64-bit file offsets that wrapper binds to
    // fcntl64@GLIBC_2.28, above the 2.17 floor the prebuilds keep (the qemu gate checks it).
    ss.fd = static_cast<int>(syscall(SYS_fcntl, orig, F_DUPFD_CLOEXEC, 0));
    if (ss.fd < 0) {
      CloseFds();
      Napi::Error::New(env, "BP_ERR_ENGINE: cannot duplicate the socket descriptor").ThrowAsJavaScriptException();
      return;
    }
    ss.t0 = u64(s, "t0", 0);
    // A TLS stream brings its session (native/tls.h): the loop reads and writes records through it.
    Napi::Value tlsv = s.Get("tls");
    if (tlsv.IsObject()) {
      TlsSession* sess = Napi::ObjectWrap<TlsSession>::Unwrap(tlsv.As<Napi::Object>());
      if (!sess || !sess->ssl() || sess->lent) {
        close(ss.fd);
        CloseFds();
        Napi::Error::New(env, "BP_ERR_ENGINE: the TLS session is not usable").ThrowAsJavaScriptException();
        return;
      }
      ss.ssl = sess->ssl();
      ss.tls = &sess->io();
      sess->lent = true;
      sessions_.push_back(sess);
    }
    if (job_.text_max > 0) {
      Napi::Value h = s.Get("wsHeader");
      if (h.IsBuffer()) {
        Slice hs = slice(h);
        ss.ws_header.assign(hs.data, hs.data + hs.len);
      }
      ss.ws_remaining = u64(s, "wsRemaining", 0);
      ss.ws_fin = s.Get("wsFin").ToBoolean().Value();
      ss.ws_mask_pos = static_cast<unsigned>(u64(s, "wsMaskPos", 0));
      Napi::Value m = s.Get("wsMask");
      if (m.IsBuffer() && m.As<Napi::Buffer<uint8_t>>().Length() == 4) {
        ss.ws_masked = true;
        std::memcpy(ss.ws_mask, m.As<Napi::Buffer<uint8_t>>().Data(), 4);
      }
    }
    Napi::Value pending = s.Get("pending");
    if (pending.IsBuffer()) {
      Slice p = slice(pending);
      ss.pending.assign(p.data, p.data + p.len);
    }
    if (job_.mode == Mode::Send) {
      Napi::Array cont = s.Get("cont").As<Napi::Array>();
      for (uint32_t k = 0; k < cont.Length(); k++) ss.cont.push_back(slice(cont.Get(k)));
      ss.fin = slice(s.Get("fin"));
      // A scaling send's larger sets, smallest first: [{size, cont: [Buffer], fin: Buffer}]
      Napi::Value grow = s.Get("grow");
      if (grow.IsArray() && job_.scale_divisor > 0) {
        Napi::Array g = grow.As<Napi::Array>();
        for (uint32_t k = 0; k < g.Length(); k++) {
          Napi::Object set = g.Get(k).As<Napi::Object>();
          SetSpec ns;
          ns.size = static_cast<uint32_t>(u64(set, "size", 0));
          Napi::Array c = set.Get("cont").As<Napi::Array>();
          for (uint32_t m = 0; m < c.Length(); m++) ns.cont.push_back(slice(c.Get(m)));
          ns.fin = slice(set.Get("fin"));
          if (ns.size == 0 || ns.cont.empty()) continue;
          ss.grow.push_back(std::move(ns));
        }
      }
    }
    specs_.push_back(std::move(ss));
  }
  outcomes_.resize(specs_.size());
  ctl_.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (ctl_.wake_fd < 0) Napi::Error::New(env, "BP_ERR_ENGINE: eventfd failed").ThrowAsJavaScriptException();
  track(env, this);
}

Run::~Run() {
  forget(this);
  Shutdown();
  CloseWake();
}

// Only after Join: the duplicated stream descriptors (see the constructor).
void Run::CloseFds() {
  for (auto& s : specs_) {
    if (s.fd >= 0) close(s.fd);
    s.fd = -1;
  }
}

// Only on the JS thread, after the stream threads were joined (abort() checks wake_fd there too).
void Run::CloseWake() {
  if (ctl_.wake_fd >= 0) close(ctl_.wake_fd);
  ctl_.wake_fd = -1;
}

void Run::Shutdown() {
  ctl_.stop();
  Join();
  CloseFds();
}

void Run::Join() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

// start(callback): one thread per stream (measured against an epoll loop: with at most a handful of
// streams per run on small machines, blocking per-stream threads are simpler and no slower). The
// callback gets the outcomes on the JS thread once every stream has finished.
Napi::Value Run::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (started_) {
    Napi::Error::New(env, "BP_ERR_ENGINE: run already started").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  started_ = true;
  Ref();  // keep this object (and through keep_, its buffers) alive until the callback ran
  tsfn_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "bandwidth-probe-run", 0, 1);
  remaining_.store(static_cast<int>(specs_.size()));
  for (size_t i = 0; i < specs_.size(); i++) {
    threads_.emplace_back([this, i] {
      run_stream(job_, specs_[i], ctl_, counters_ + i, outcomes_[i]);
      if (remaining_.fetch_sub(1) == 1) {
        // Last stream: hand over to the JS thread. Never touches Napi::Env here.
        tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function cb) { OnAllDone(env, cb); });
        tsfn_.Release();
      }
    });
  }
  if (specs_.empty()) {
    tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function cb) { OnAllDone(env, cb); });
    tsfn_.Release();
  }
  return env.Undefined();
}

void Run::OnAllDone(Napi::Env env, Napi::Function cb) {
  Join();
  CloseFds();
  // The sessions are the JS side's again (kept alive by keep_, the spec that names them).
  for (TlsSession* t : sessions_) t->lent = false;
  sessions_.clear();
  forget(this);
  // No thread uses the eventfd any more: close it now, not when the GC gets to this object (a busy
  // server would otherwise hold one per finished run until then — the abuse test counts them).
  CloseWake();
  // During env teardown (process or worker exit) the call may come with no env or callback, or with JS
  // no longer allowed to run; then there is nobody to tell and nothing may throw out of here.
  if (env == nullptr || cb.IsEmpty()) return;
  try {
    Deliver(env, cb);
    Unref();
  } catch (const Napi::Error&) {
  }
}

void Run::Deliver(Napi::Env env, Napi::Function cb) {
  Napi::Array out = Napi::Array::New(env, outcomes_.size());
  for (size_t i = 0; i < outcomes_.size(); i++) {
    Outcome& o = outcomes_[i];
    Napi::Object r = Napi::Object::New(env);
    auto pts = Napi::Float64Array::New(env, o.points.size());
    for (size_t k = 0; k < o.points.size(); k++) pts[k] = static_cast<double>(o.points[k]);
    r.Set("points", pts);
    r.Set("bytes", Napi::Number::New(env, static_cast<double>(o.bytes)));
    r.Set("endNs", Napi::Number::New(env, static_cast<double>(o.end_ns)));
    r.Set("lastNs", Napi::Number::New(env, static_cast<double>(o.last_ns)));
    r.Set("leftover", Napi::Buffer<uint8_t>::Copy(env, o.leftover.data(), o.leftover.size()));
    r.Set("leftoverDecoded", Napi::Boolean::New(env, o.leftover_decoded));
    r.Set("usedTrunc", Napi::Boolean::New(env, o.used_trunc));
    if (job_.count_inbound) {
      auto rx = Napi::Float64Array::New(env, o.rx_points.size());
      for (size_t k = 0; k < o.rx_points.size(); k++) rx[k] = static_cast<double>(o.rx_points[k]);
      r.Set("rxPoints", rx);
      r.Set("rxBytes", Napi::Number::New(env, static_cast<double>(o.rx_bytes)));
    }
    if (job_.text_max > 0) {
      // text mode: the text messages with their times (ns since t0), and how the stream ended
      Napi::Array texts = Napi::Array::New(env, o.texts.kept.size());
      for (size_t k = 0; k < o.texts.kept.size(); k++) {
        const TextMsg& m = o.texts.kept[k];
        Napi::Object t = Napi::Object::New(env);
        t.Set("t", Napi::Number::New(env, static_cast<double>(m.at)));
        t.Set("body", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(m.body.data()), m.body.size()));
        texts[k] = t;
      }
      r.Set("texts", texts);
      r.Set("wsClosed", Napi::Boolean::New(env, o.ws_closed));
      r.Set("midMessage", Napi::Boolean::New(env, o.mid_message));
    }
    if (o.err != Err::Ok) {
      r.Set("code", Napi::String::New(env, err_code(o.err)));
      r.Set("message", Napi::String::New(env, o.message));
    }
    out[i] = r;
  }
  cb.Call({out});
}

Napi::Value Run::Abort(const Napi::CallbackInfo& info) {
  ctl_.stop();
  return info.Env().Undefined();
}

}  // namespace bp
