// The TCP hot loops: receive (RMBT chunk framing or raw, optionally inside WebSocket frames) and send
// (pre-framed chunks). One call runs one stream on the calling (non-JS) thread; no allocation happens per
// chunk: buffers and the point vector are sized before the loop starts.
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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
    if (n > 0) out.last_ns = t;
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
  // text mode (ndt7): inbound frames are parsed, binary payload counted, text kept, pings and a close
  // noted for the send loop to answer between messages
  Parser* ps = nullptr;
  uint64_t t0 = 0;
  // whether poll() should wake for input: not after a close frame (nothing more is read then)
  bool wants() const { return !ps || !ps->closed; }
};

// Text mode: n bytes read while sending go through the frame parser.
bool parse_inbound(Inbound& in, const uint8_t* data, size_t n, Err* err) {
  in.ps->at = now_ns() - in.t0;
  size_t used = 0;
  in.bytes += in.ps->feed(data, n, true, &used);
  if (in.ps->error) {
    *err = Err::Protocol;
    return false;
  }
  return true;
}

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
  if (!in.wants()) return true;
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
      if (in.ps ? !parse_inbound(in, in.scratch.data(), static_cast<size_t>(r), err)
                : !keep_inbound(in, in.scratch.data(), static_cast<size_t>(r), err))
        return false;
      if (!in.wants()) return true;
    }
    return true;
  }
  const int fd = spec.fd;
  for (int round = 0; round < 64; round++) {
    ssize_t r;
    if (in.ps) {
      r = recv(fd, in.scratch.data(), in.scratch.size(), MSG_DONTWAIT);
    } else if (in.count) {
      r = recv(fd, in.scratch.data(), in.scratch.size(), MSG_TRUNC | MSG_DONTWAIT);
    } else {
      r = recv(fd, in.scratch.data(), std::min<size_t>(in.scratch.size(), 16384), MSG_DONTWAIT);
    }
    if (r == 0) {
      *err = Err::PeerClosed;
      return false;
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;  // nothing more now
      *err = Err::PeerClosed;
      return false;
    }
    if (in.ps) {
      if (!parse_inbound(in, in.scratch.data(), static_cast<size_t>(r), err)) return false;
      if (!in.wants() || static_cast<size_t>(r) < in.scratch.size()) return true;
      continue;
    }
    // with MSG_TRUNC the scratch bytes are not the data, but only the count matters then
    if (!keep_inbound(in, in.scratch.data(), static_cast<size_t>(r), err)) return false;
    if (static_cast<size_t>(r) < (in.count ? in.scratch.size() : 16384)) return true;
  }
  return true;
}

// Waits until the socket takes more (POLLOUT); inbound bytes seen meanwhile go to `in`.
Err wait_writable(const StreamSpec& spec, Control& ctl, uint64_t idle_ns, Inbound* in) {
  short rev = 0;
  int w = wait_fd(spec.fd, in && in->wants() ? (POLLOUT | POLLIN) : POLLOUT, ctl, now_ns() + idle_ns, &rev);
  if (w < 0) return Err::Aborted;
  if (w == 0) return Err::Stalled;
  if ((rev & POLLIN) && in && in->wants()) {
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
    int w = wait_fd(fd, in && in->wants() ? (POLLOUT | POLLIN) : POLLOUT, ctl, now_ns() + idle_ns, &rev);
    if (w < 0) return Err::Aborted;
    if (w == 0) return Err::Stalled;
    if ((rev & POLLIN) && in && in->wants()) {
      Err e = Err::Ok;
      if (!take_inbound(spec, *in, &e)) return e;
    } else if (rev & (POLLERR | POLLHUP)) {
      return Err::PeerClosed;
    }
  }
  return Err::Ok;
}

// A WebSocket control frame of ours (RFC 6455 §5.5): a client masks it with a fresh key.
void write_control(const StreamSpec& spec, const Job& job, Control& ctl, uint8_t opcode, const uint8_t* payload,
                   size_t len) {
  uint8_t f[2 + 4 + 125];
  bool mask = job.ws == WsRole::Client;
  len = std::min<size_t>(len, 125);
  f[0] = static_cast<uint8_t>(0x80 | opcode);
  f[1] = static_cast<uint8_t>((mask ? 0x80 : 0) | len);
  size_t p = 2;
  uint8_t key[4] = {0, 0, 0, 0};
  if (mask) {
    // the kernel's random bytes (raw syscall: glibc's getrandom() is above the prebuilds' 2.17 floor);
    // a clock-derived key if that fails, which the peer cannot tell apart
    if (syscall(SYS_getrandom, key, sizeof key, 0) != static_cast<long>(sizeof key)) {
      uint64_t t = now_ns() * 0x9e3779b97f4a7c15ull;
      std::memcpy(key, &t, 4);
    }
    std::memcpy(f + 2, key, 4);
    p = 6;
  }
  for (size_t k = 0; k < len; k++) f[p + k] = payload[k] ^ key[k & 3];
  write_all(spec, f, p + len, ctl, job.idle_ns, nullptr);
}

// The close frame ndt7 peers exchange at the end (status 1000, normal closure), sent or answered: the
// close handshake is ours to finish, and the stream goes back to TypeScript closed.
void write_close(const StreamSpec& spec, const Job& job, Control& ctl, Outcome& out) {
  const uint8_t code[2] = {0x03, 0xe8};
  write_control(spec, job, ctl, 0x8, code, 2);
  out.ws_closed = true;
}

// Text mode: answers the newest ping (between messages only: a frame of ours may not split one).
void answer_ping(const StreamSpec& spec, const Job& job, Control& ctl, Parser& ps) {
  if (!ps.pong_due) return;
  ps.pong_due = false;
  write_control(spec, job, ctl, 0xa, ps.pong, ps.pong_len);
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

void resume(Parser& ps, const StreamSpec& spec) {
  ps.resume(spec.ws_header.data(), spec.ws_header.size(), spec.ws_remaining, spec.ws_fin,
            spec.ws_masked ? spec.ws_mask : nullptr, spec.ws_mask_pos);
}

void receive(const Job& job, const StreamSpec& spec, Control& ctl, Track& tr) {
  Outcome& out = tr.out;
  Parser ps(job);
  ps.texts = &out.texts;
  const bool text_mode = ps.text_mode();
  if (text_mode) resume(ps, spec);
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
  // Every end: text mode notes whether the stream stopped inside a message (TypeScript cannot go on
  // decoding it then).
  auto end = [&](Err e, const char* msg) {
    if (text_mode) out.mid_message = !ps.at_message_start();
    tr.finish(e, msg);
  };

  // Bytes the protocol reader had buffered are already-unframed payload.
  if (!spec.pending.empty()) {
    size_t used = 0;
    uint64_t p = ps.feed(spec.pending.data(), spec.pending.size(), false, &used);
    tr.add(p, now_ns(), ps.done);
    if (ps.done) {
      out.leftover.assign(spec.pending.begin() + static_cast<long>(used), spec.pending.end());
      out.leftover_decoded = true;
      return end(Err::Ok, nullptr);
    }
  }

  for (;;) {
    uint64_t now = now_ns();
    if (ctl.aborted.load(std::memory_order_relaxed)) return end(Err::Aborted, "aborted");
    // Raw streams (btest) have no last chunk: their deadline is the normal end.
    if (now >= hard) return job.framing == Framing::Raw ? end(Err::Ok, nullptr) : end(Err::Timeout, "the last chunk did not come in time");
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
        return end(e, msg.empty() ? "TLS read failed" : msg.c_str());
      }
    } else {
      n = recv(spec.fd, buf.data(), buf.size(), MSG_DONTWAIT);
    }
    if (n == 0) return end(Err::PeerClosed, "the peer closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return end(errno == ECONNRESET ? Err::PeerClosed : Err::Io, std::strerror(errno));
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
      if (w < 0) return end(Err::Aborted, "aborted");
      if (w == 0) {
        if (now_ns() >= hard) {
          return job.framing == Framing::Raw ? end(Err::Ok, nullptr) : end(Err::Timeout, "the last chunk did not come in time");
        }
        return end(Err::Stalled, "no data arrived within the idle timeout");
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
    ps.at = at - spec.t0;
    uint64_t payload = ps.feed(buf.data(), static_cast<size_t>(n), true, &used);
    if (ps.error) return end(Err::Protocol, ps.why());
    if (ps.closed) {
      // ndt7 peers get the close answered (RFC 6455 §5.5.1); RMBT's servers just see the end
      if (text_mode) write_close(spec, job, ctl, out);
      tr.add(payload, at, false);
      return end(Err::PeerClosed, "WebSocket close frame");
    }
    if (text_mode) answer_ping(spec, job, ctl, ps);
    tr.add(payload, at, ps.done);
    if (ps.done) {
      out.leftover.assign(buf.data() + used, buf.data() + n);
      return end(Err::Ok, nullptr);
    }
    report(at);
  }
}

// Text mode after the last message: our close frame, then what the peer still sends (its last
// measurement) until its close, the end of the stream or `close_wait_ns`.
void close_handshake(const Job& job, const StreamSpec& spec, Control& ctl, Inbound& in, Outcome& out) {
  Parser& ps = *in.ps;
  write_close(spec, job, ctl, out);
  uint64_t deadline = now_ns() + job.close_wait_ns;
  while (!ps.closed && !ps.error) {
    uint64_t before = in.bytes;
    size_t texts = out.texts.kept.size() + out.texts.dropped;
    Err e = Err::Ok;
    if (!take_inbound(spec, in, &e)) return;  // the end of the stream (or a reset) ends it too
    if (ps.closed) return;
    // TLS may hold whole records already read from the socket: read again before waiting
    if (spec.ssl && (in.bytes != before || out.texts.kept.size() + out.texts.dropped != texts)) continue;
    short rev = 0;
    if (wait_fd(spec.fd, POLLIN, ctl, deadline, &rev) <= 0) return;
  }
}

void send_loop(const Job& job, const StreamSpec& spec, Control& ctl, Track& tr) {
  Inbound in;
  in.keep = &tr.out.leftover;
  in.count = job.count_inbound;
  Parser ps(job);
  const bool text_mode = ps.text_mode();
  if (text_mode) {
    ps.texts = &tr.out.texts;
    in.ps = &ps;
    in.t0 = spec.t0;
    resume(ps, spec);
  }
  in.scratch.resize(job.count_inbound || text_mode ? kRecvBuf : 16384);
  tr.out.leftover.reserve(64 * 1024);
  if (job.count_inbound) tr.out.rx_points.reserve(tr.max_points);
  // The message set in use: the job's own, then (scaling) each larger one once its size is at most
  // 1/scale_divisor of the payload sent so far.
  const std::vector<Slice>* cont = &spec.cont;
  const Slice* fin = &spec.fin;
  uint64_t size = job.payload_size;
  size_t next_set = 0;
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
    if (text_mode) tr.out.mid_message = !ps.at_message_start();
    tr.out.rx_bytes = in.bytes;
    sample_rx(now_ns(), true);
    tr.finish(e, msg);
  };
  // Text mode, between two messages: the pings and the close the peer sent meanwhile are answered.
  auto control = [&]() -> bool {
    if (!text_mode) return true;
    if (ps.error) {
      done(Err::Protocol, ps.why());
      return false;
    }
    answer_ping(spec, job, ctl, ps);
    if (ps.closed) {
      write_close(spec, job, ctl, tr.out);
      done(Err::PeerClosed, "WebSocket close frame");
      return false;
    }
    return true;
  };
  for (;;) {
    if (ctl.aborted.load(std::memory_order_relaxed)) return done(Err::Aborted, "aborted");
    uint64_t now = now_ns();
    // RMBT: the last chunk is the first one started at or after the deadline (GETTIME / PUT, §3.2, §4.4).
    bool last = job.duration_ns ? (now - spec.t0 >= job.duration_ns) : (sent + 1 >= job.count);
    if (job.rate_bps && !last) {
      // Chunk n is due at t0 + n·size·8/rate (absolute deadlines: no drift).
      uint64_t due = spec.t0 + static_cast<uint64_t>(double(tr.bytes) * 8e9 / double(job.rate_bps));
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
    const Slice& s = last ? *fin : (*cont)[v++ % cont->size()];
    Err e = write_all(spec, s.data, s.len, ctl, job.idle_ns, &in);
    if (e != Err::Ok) {
      if (e == Err::Protocol && text_mode) return done(e, ps.why());
      return done(e, e == Err::Stalled ? "the peer took nothing within the idle timeout" : e == Err::Aborted ? "aborted" : "send failed");
    }
    sent++;
    uint64_t at = now_ns();
    tr.add(size, at, last);
    if (next_set < spec.grow.size() && spec.grow[next_set].size * uint64_t(job.scale_divisor) <= tr.bytes) {
      const SetSpec& g = spec.grow[next_set++];
      cont = &g.cont;
      fin = &g.fin;
      size = g.size;
      v = 0;
    }
    if (!control()) return;
    if (last) {
      if (text_mode && job.close_wait_ns) close_handshake(job, spec, ctl, in, tr.out);
      return done(Err::Ok, nullptr);
    }
    // Read what the peer sends about every millisecond (always, when it is data) so it never blocks.
    if (job.count_inbound || at - last_drain > 1000000) {
      last_drain = at;
      Err ie = Err::Ok;
      if (!take_inbound(spec, in, &ie)) {
        if (ie == Err::Protocol && text_mode) return done(ie, ps.why());
        return done(ie, ie == Err::PeerClosed ? "the peer closed the connection" : "the peer sent too much");
      }
      sample_rx(at, false);
      if (!control()) return;
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
