// The TCP hot loops: receive (RMBT chunk framing or raw, optionally inside WebSocket frames) and send
// (pre-framed chunks). One call runs one stream on the calling (non-JS) thread; no allocation happens per
// chunk: buffers and the point vector are sized before the loop starts.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "clock.h"
#include "framing.h"
#include "stream.h"
#include "tls.h"

namespace bp {
namespace {

constexpr size_t kRecvBuf = 1024 * 1024;
// Skips at least this long are discarded in the kernel (recv MSG_TRUNC) instead of copied: for RMBT only
// the last byte of each chunk matters (specs/rmbt.md §3.3), so the bytes before it need not reach us.
constexpr size_t kTruncMin = 16 * 1024;
constexpr size_t kMaxInbound = 16 * 1024 * 1024;
// Receive low-water mark: poll() wakes when this much is queued, so each wake-up drains a big batch
// instead of the first segment (fewer wake-ups and window updates for the sender). Never above the bytes
// left to the next byte we must look at, or the end of a transfer would never wake us.
constexpr uint64_t kLowat = 256 * 1024;
// TLS sends: plaintext encrypted per call (16 records), then sent in one block before the next slice.
constexpr size_t kTlsSlice = 256 * 1024;

inline void publish(double* counter, uint64_t bytes) {
  double v = static_cast<double>(bytes);
  __atomic_store(counter, &v, __ATOMIC_RELAXED);
}

// Shared per-stream bookkeeping: byte count, points (bounded, preallocated), deadlines.
struct Track {
  const Job& job;
  const StreamSpec& spec;
  double* counter;
  Outcome& out;
  uint64_t bytes = 0;
  uint64_t last_sample = 0;
  bool sampled = false;
  size_t max_points;

  Track(const Job& j, const StreamSpec& s, double* c, Outcome& o) : job(j), spec(s), counter(c), out(o) {
    uint64_t span = j.mode == Mode::Send && j.duration_ns ? j.duration_ns : j.max_ns;
    max_points = static_cast<size_t>(span / std::max<uint64_t>(j.sample_ns, 1000000) + 64) * 2;
    out.points.reserve(max_points);
  }

  void add(uint64_t n, uint64_t at, bool force) {
    bytes += n;
    publish(counter, bytes);
    uint64_t t = at - spec.t0;
    if (force || !sampled || t - last_sample >= job.sample_ns) {
      // Never grow past the reserved size: a full vector keeps only forced (final) points.
      if (out.points.size() + 2 <= max_points || force) {
        out.points.push_back(t);
        out.points.push_back(bytes);
      }
      last_sample = t;
      sampled = true;
    }
  }

  void finish(Err e, const char* msg) {
    out.bytes = bytes;
    out.end_ns = now_ns() - spec.t0;
    out.err = e;
    if (msg) out.message = msg;
    size_t n = out.points.size();
    if (e == Err::Ok && bytes > 0 && (n < 2 || out.points[n - 1] != bytes)) {
      out.points.push_back(out.end_ns);
      out.points.push_back(bytes);
    }
  }
};

// Waits for `events` on fd or for the abort eventfd. Returns 1 ready, 0 timeout, -1 aborted/error.
int wait_fd(int fd, short events, Control& ctl, uint64_t deadline, short* revents) {
  pollfd p[2] = {{fd, events, 0}, {ctl.wake_fd, POLLIN, 0}};
  for (;;) {
    if (ctl.aborted.load(std::memory_order_relaxed)) return -1;
    uint64_t now = now_ns();
    if (now >= deadline) return 0;
    int ms = static_cast<int>(std::min<uint64_t>((deadline - now) / 1000000 + 1, 1000));
    int r = poll(p, 2, ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (p[1].revents) return -1;
    if (p[0].revents) {
      *revents = p[0].revents;
      return 1;
    }
  }
}

// What arrives while sending: protocol words to keep (RMBT PUT feedback), or data to count and drop
// (btest TCP both).
struct Inbound {
  std::vector<uint8_t>* keep = nullptr;
  bool count = false;
  uint64_t bytes = 0;
  std::vector<uint8_t> scratch;
};

// Counts (btest TCP both) or keeps (protocol words, bounded) what arrived while sending.
bool keep_inbound(Inbound& in, const uint8_t* data, size_t n, Err* err) {
  if (in.count) {
    in.bytes += n;
    return true;
  }
  if (in.keep->size() + n > kMaxInbound) {
    *err = Err::Protocol;
    return false;
  }
  in.keep->insert(in.keep->end(), data, data + n);
  return true;
}

// Reads what is there without blocking. Returns false when the peer closed or sent too much.
bool take_inbound(const StreamSpec& spec, Inbound& in, Err* err) {
  if (spec.ssl) {
    for (int round = 0; round < 64; round++) {
      long r = tls_read(spec.ssl, *spec.tls, in.scratch.data(), in.scratch.size(), nullptr);
      if (r == 0) {
        *err = Err::PeerClosed;
        return false;
      }
      if (r < 0) {
        if (errno == EAGAIN) return true;
        *err = errno == EPROTO ? Err::Protocol : Err::PeerClosed;
        return false;
      }
      if (!keep_inbound(in, in.scratch.data(), static_cast<size_t>(r), err)) return false;
    }
    return true;
  }
  const int fd = spec.fd;
  for (int round = 0; round < 64; round++) {
    ssize_t r;
    if (in.count) {
      r = recv(fd, in.scratch.data(), in.scratch.size(), MSG_TRUNC | MSG_DONTWAIT);
    } else {
      r = recv(fd, in.scratch.data(), std::min<size_t>(in.scratch.size(), 16384), MSG_DONTWAIT);
    }
    if (r == 0) {
      *err = Err::PeerClosed;
      return false;
    }
    if (r < 0) return true;  // EAGAIN: nothing more now
    // with MSG_TRUNC the scratch bytes are not the data, but only the count matters then
    if (!keep_inbound(in, in.scratch.data(), static_cast<size_t>(r), err)) return false;
    if (static_cast<size_t>(r) < (in.count ? in.scratch.size() : 16384)) return true;
  }
  return true;
}

// Waits until the socket takes more (POLLOUT); inbound bytes seen meanwhile go to `in`.
Err wait_writable(const StreamSpec& spec, Control& ctl, uint64_t idle_ns, Inbound* in) {
  short rev = 0;
  int w = wait_fd(spec.fd, in ? (POLLOUT | POLLIN) : POLLOUT, ctl, now_ns() + idle_ns, &rev);
  if (w < 0) return Err::Aborted;
  if (w == 0) return Err::Stalled;
  if ((rev & POLLIN) && in) {
    Err e = Err::Ok;
    if (!take_inbound(spec, *in, &e)) return e;
  } else if ((rev & (POLLERR | POLLHUP)) && !(rev & POLLOUT)) {
    return Err::PeerClosed;
  }
  return Err::Ok;
}

// TLS: encrypts a slice, sends it in one block, and so on (SSL_write of whole records into our BIO, then
// one send() of up to 256 KiB plus record overhead; specs/rmbt.md §2.2 for TLS itself).
Err tls_write_all(const StreamSpec& spec, const uint8_t* data, size_t len, Control& ctl, uint64_t idle_ns, Inbound* in) {
  size_t off = 0;
  for (;;) {
    for (;;) {
      int r = tls_flush(*spec.tls);
      if (r == 1) break;
      if (r < 0) return errno == EPIPE || errno == ECONNRESET ? Err::PeerClosed : Err::Io;
      Err e = wait_writable(spec, ctl, idle_ns, in);
      if (e != Err::Ok) return e;
    }
    if (off >= len) return Err::Ok;
    long n = tls_encrypt(spec.ssl, data + off, std::min(len - off, kTlsSlice), nullptr);
    if (n <= 0) return Err::Io;
    off += static_cast<size_t>(n);
  }
}

// Writes a whole buffer, waiting for room; inbound bytes seen meanwhile go to `in`.
Err write_all(const StreamSpec& spec, const uint8_t* data, size_t len, Control& ctl, uint64_t idle_ns, Inbound* in) {
  if (spec.ssl) return tls_write_all(spec, data, len, ctl, idle_ns, in);
  const int fd = spec.fd;
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return errno == EPIPE || errno == ECONNRESET ? Err::PeerClosed : Err::Io;
    short rev = 0;
    int w = wait_fd(fd, in ? (POLLOUT | POLLIN) : POLLOUT, ctl, now_ns() + idle_ns, &rev);
    if (w < 0) return Err::Aborted;
    if (w == 0) return Err::Stalled;
    if ((rev & POLLIN) && in) {
      Err e = Err::Ok;
      if (!take_inbound(spec, *in, &e)) return e;
    } else if (rev & (POLLERR | POLLHUP)) {
      return Err::PeerClosed;
    }
  }
  return Err::Ok;
}

void write_report(const StreamSpec& spec, const Job& job, uint64_t t, uint64_t bytes, Control& ctl) {
  char line[96];
  int len = std::snprintf(line + 2, sizeof line - 2, "TIME %llu BYTES %llu\n", static_cast<unsigned long long>(t),
                          static_cast<unsigned long long>(bytes));
  const uint8_t* p = reinterpret_cast<const uint8_t*>(line + 2);
  size_t n = static_cast<size_t>(len);
  if (job.ws == WsRole::Server) {  // server frames are unmasked text frames
    line[0] = static_cast<char>(0x81);
    line[1] = static_cast<char>(len);
    p = reinterpret_cast<const uint8_t*>(line);
    n += 2;
  }
  write_all(spec, p, n, ctl, job.idle_ns, nullptr);
}

void receive(const Job& job, const StreamSpec& spec, Control& ctl, Track& tr) {
  Outcome& out = tr.out;
  Parser ps(job);
  std::vector<uint8_t> buf(kRecvBuf);
  uint64_t last_data = now_ns();
  uint64_t hard = spec.t0 + job.max_ns;
  uint64_t last_report = 0;
  bool reported = false;
  bool trunc_ok = job.trunc;
  int lowat = 1;

  auto report = [&](uint64_t at) {
    if (!job.report_ns || ps.done) return;
    if (!reported || at - last_report > job.report_ns) {
      reported = true;
      last_report = at;
      write_report(spec, job, at - spec.t0, tr.bytes, ctl);
    }
  };

  // Bytes the protocol reader had buffered are already-unframed payload.
  if (!spec.pending.empty()) {
    size_t used = 0;
    uint64_t p = ps.feed(spec.pending.data(), spec.pending.size(), false, &used);
    tr.add(p, now_ns(), ps.done);
    if (ps.done) {
      out.leftover.assign(spec.pending.begin() + static_cast<long>(used), spec.pending.end());
      out.leftover_decoded = true;
      return tr.finish(Err::Ok, nullptr);
    }
  }

  for (;;) {
    uint64_t now = now_ns();
    if (ctl.aborted.load(std::memory_order_relaxed)) return tr.finish(Err::Aborted, "aborted");
    // Raw streams (btest) have no last chunk: their deadline is the normal end.
    if (now >= hard) return job.framing == Framing::Raw ? tr.finish(Err::Ok, nullptr) : tr.finish(Err::Timeout, "the last chunk did not come in time");
    // TLS: every byte is ciphertext that must be decrypted, so nothing is skipped in the kernel.
    uint64_t skip = trunc_ok && !spec.ssl ? ps.skippable() : 0;
    ssize_t n;
    bool truncated = false;
    if (skip >= kTruncMin) {
      // The length never exceeds the buffer: Linux does not touch it with MSG_TRUNC on TCP, but emulators
      // (qemu-user) validate the whole range and would fail with EFAULT.
      n = recv(spec.fd, buf.data(), static_cast<size_t>(std::min<uint64_t>(skip, buf.size())), MSG_TRUNC | MSG_DONTWAIT);
      truncated = true;
      if (n < 0 && (errno == EINVAL || errno == EOPNOTSUPP || errno == EFAULT)) {
        trunc_ok = false;
        continue;
      }
    } else if (spec.ssl) {
      // One record's plaintext per call (at most 16 KiB); the BIO reads up to 256 KiB per recv().
      std::string msg;
      n = tls_read(spec.ssl, *spec.tls, buf.data(), buf.size(), &msg);
      if (n < 0 && errno != EAGAIN) {
        Err e = errno == EPROTO ? Err::Protocol : errno == ECONNRESET || errno == EPIPE ? Err::PeerClosed : Err::Io;
        return tr.finish(e, msg.empty() ? "TLS read failed" : msg.c_str());
      }
    } else {
      n = recv(spec.fd, buf.data(), buf.size(), MSG_DONTWAIT);
    }
    if (n == 0) return tr.finish(Err::PeerClosed, "the peer closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return tr.finish(errno == ECONNRESET ? Err::PeerClosed : Err::Io, std::strerror(errno));
      }
      // Not for TLS: ciphertext already in the BIO counts toward a record, so a mark set from plaintext
      // could wait for bytes that are already here.
      if (job.lowat && !spec.ssl) {
        uint64_t need = ps.skippable();
        int want = static_cast<int>(std::max<uint64_t>(1, std::min<uint64_t>(need == UINT64_MAX ? 1 : need + 1, kLowat)));
        if (want != lowat) {
          setsockopt(spec.fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want);
          lowat = want;
        }
      }
      short rev = 0;
      uint64_t deadline = std::min(last_data + job.idle_ns, hard);
      int w = wait_fd(spec.fd, POLLIN, ctl, deadline, &rev);
      if (w < 0) return tr.finish(Err::Aborted, "aborted");
      if (w == 0) {
        if (now_ns() >= hard) {
          return job.framing == Framing::Raw ? tr.finish(Err::Ok, nullptr) : tr.finish(Err::Timeout, "the last chunk did not come in time");
        }
        return tr.finish(Err::Stalled, "no data arrived within the idle timeout");
      }
      continue;
    }
    uint64_t at = now_ns();
    last_data = at;
    if (truncated) {
      out.used_trunc = true;
      ps.skipped(static_cast<uint64_t>(n));
      tr.add(static_cast<uint64_t>(n), at, false);
      report(at);
      continue;
    }
    size_t used = 0;
    uint64_t payload = ps.feed(buf.data(), static_cast<size_t>(n), true, &used);
    if (ps.error) return tr.finish(Err::Protocol, "malformed WebSocket frame");
    if (ps.closed) return tr.finish(Err::PeerClosed, "WebSocket close frame");
    tr.add(payload, at, ps.done);
    if (ps.done) {
      out.leftover.assign(buf.data() + used, buf.data() + n);
      return tr.finish(Err::Ok, nullptr);
    }
    report(at);
  }
}

void send_loop(const Job& job, const StreamSpec& spec, Control& ctl, Track& tr) {
  Inbound in;
  in.keep = &tr.out.leftover;
  in.count = job.count_inbound;
  in.scratch.resize(job.count_inbound ? kRecvBuf : 16384);
  tr.out.leftover.reserve(64 * 1024);
  if (job.count_inbound) tr.out.rx_points.reserve(tr.max_points);
  size_t v = 0;
  uint64_t sent = 0;
  uint64_t last_drain = now_ns();
  uint64_t last_rx_sample = 0;
  auto sample_rx = [&](uint64_t at, bool force) {
    if (!job.count_inbound) return;
    uint64_t t = at - spec.t0;
    if ((force || tr.out.rx_points.empty() || t - last_rx_sample >= job.sample_ns) && tr.out.rx_points.size() + 2 <= tr.max_points) {
      tr.out.rx_points.push_back(t);
      tr.out.rx_points.push_back(in.bytes);
      last_rx_sample = t;
    }
  };
  auto done = [&](Err e, const char* msg) {
    tr.out.rx_bytes = in.bytes;
    sample_rx(now_ns(), true);
    tr.finish(e, msg);
  };
  for (;;) {
    if (ctl.aborted.load(std::memory_order_relaxed)) return done(Err::Aborted, "aborted");
    uint64_t now = now_ns();
    // RMBT: the last chunk is the first one started at or after the deadline (GETTIME / PUT, §3.2, §4.4).
    bool last = job.duration_ns ? (now - spec.t0 >= job.duration_ns) : (sent + 1 >= job.count);
    if (job.rate_bps && !last) {
      // Chunk n is due at t0 + n·size·8/rate (absolute deadlines: no drift).
      uint64_t due = spec.t0 + static_cast<uint64_t>(double(sent) * job.payload_size * 8e9 / double(job.rate_bps));
      if (due > now) {
        uint64_t stop = job.duration_ns ? spec.t0 + job.duration_ns : due;
        pollfd w[2] = {{ctl.wake_fd, POLLIN, 0}, {spec.fd, POLLIN, 0}};
        poll(w, job.count_inbound ? 2 : 1, static_cast<int>((std::min(due, stop) - now) / 1000000 + 1));
        if (job.count_inbound) {
          Err e = Err::Ok;
          if (!take_inbound(spec, in, &e)) return done(e, "the peer closed the connection");
          sample_rx(now_ns(), false);
        }
        continue;
      }
    }
    const Slice& s = last ? spec.fin : spec.cont[v++ % spec.cont.size()];
    Err e = write_all(spec, s.data, s.len, ctl, job.idle_ns, &in);
    if (e != Err::Ok) {
      return done(e, e == Err::Stalled ? "the peer took nothing within the idle timeout" : e == Err::Aborted ? "aborted" : "send failed");
    }
    sent++;
    uint64_t at = now_ns();
    tr.add(job.payload_size, at, last);
    if (last) return done(Err::Ok, nullptr);
    // Read what the peer sends about every millisecond (always, when it is data) so it never blocks.
    if (job.count_inbound || at - last_drain > 1000000) {
      last_drain = at;
      Err ie = Err::Ok;
      if (!take_inbound(spec, in, &ie)) return done(ie, ie == Err::PeerClosed ? "the peer closed the connection" : "the peer sent too much");
      sample_rx(at, false);
    }
  }
}

}  // namespace

void run_stream(const Job& job, const StreamSpec& spec, Control& ctl, double* counter, Outcome& out) {
  Track tr(job, spec, counter, out);
  // TLS: the session's BIO works on this thread's duplicate of the socket until the stream ends.
  if (spec.tls) spec.tls->fd = spec.fd;
  if (job.mode == Mode::Receive) {
    receive(job, spec, ctl, tr);
    // The socket goes back to Node: leave the default low-water mark.
    if (job.lowat && !spec.ssl) {
      int one = 1;
      setsockopt(spec.fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
    }
  } else {
    send_loop(job, spec, ctl, tr);
  }
  // Back to fed mode: ciphertext still unsent (if the stream failed) goes out through Node.
  if (spec.tls) spec.tls->fd = -1;
}

}  // namespace bp
