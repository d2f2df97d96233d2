// tcpInfo(fd): the kernel's TCP_INFO of one socket, in the field names ndt7's measurement messages use
// (ndt7 spec, "TCPInfo"). Fields a kernel does not fill (an older struct, a shorter answer) are left out,
// so a server never reports a zero it did not read. Linux only; the uapi header carries the full struct.
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

#include "tcpinfo.h"

namespace bp {

Napi::Value TcpInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "tcpInfo(fd)").ThrowAsJavaScriptException();
    return env.Null();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct tcp_info ti {};
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  auto put = [&](const char* name, size_t end, double v) {
    if (static_cast<size_t>(len) >= end) out.Set(name, Napi::Number::New(env, v));
  };
#define BP_END(f) (offsetof(struct tcp_info, f) + sizeof(ti.f))
  // µs
  put("RTT", BP_END(tcpi_rtt), ti.tcpi_rtt);
  put("RTTVar", BP_END(tcpi_rttvar), ti.tcpi_rttvar);
  put("MinRTT", BP_END(tcpi_min_rtt), ti.tcpi_min_rtt);
  put("BusyTime", BP_END(tcpi_busy_time), static_cast<double>(ti.tcpi_busy_time));
  put("RWndLimited", BP_END(tcpi_rwnd_limited), static_cast<double>(ti.tcpi_rwnd_limited));
  put("SndBufLimited", BP_END(tcpi_sndbuf_limited), static_cast<double>(ti.tcpi_sndbuf_limited));
  // bytes
  put("BytesAcked", BP_END(tcpi_bytes_acked), static_cast<double>(ti.tcpi_bytes_acked));
  put("BytesReceived", BP_END(tcpi_bytes_received), static_cast<double>(ti.tcpi_bytes_received));
  put("BytesSent", BP_END(tcpi_bytes_sent), static_cast<double>(ti.tcpi_bytes_sent));
  put("BytesRetrans", BP_END(tcpi_bytes_retrans), static_cast<double>(ti.tcpi_bytes_retrans));
  put("TotalRetrans", BP_END(tcpi_total_retrans), ti.tcpi_total_retrans);
  put("SndCwnd", BP_END(tcpi_snd_cwnd), ti.tcpi_snd_cwnd);
#undef BP_END
  return out;
}

}  // namespace bp
