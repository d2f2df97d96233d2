#include "udp_loop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "clock.h"

namespace bp {
namespace {

constexpr int kBatch = 32;

inline void store(double* p, double v) { __atomic_store(p, &v, __ATOMIC_RELAXED); }

inline void put_be32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}
inline uint32_t get_be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }
inline void put_be64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = uint8_t(v);
}
inline uint64_t get_be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

bool fill_addr(int family, const std::string& host, uint16_t port, sockaddr_storage* ss, socklen_t* len) {
  std::memset(ss, 0, sizeof *ss);
  if (family == 6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    *len = sizeof *a;
    return inet_pton(AF_INET6, host.empty() ? "::" : host.c_str(), &a->sin6_addr) == 1;
  }
  auto* a = reinterpret_cast<sockaddr_in*>(ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  *len = sizeof *a;
  return inet_pton(AF_INET, host.empty() ? "0.0.0.0" : host.c_str(), &a->sin_addr) == 1;
}

bool same_host(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET)
    return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr == reinterpret_cast<const sockaddr_in&>(b).sin_addr.s_addr;
  return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr, 16) == 0;
}

}  // namespace

int udp_open(const UdpJob& job, uint16_t* bound_port) {
  int fd = socket(job.family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // 4 MiB buffers (RouterOS uses 128000, btest-rs 4 MiB): the FORCE variants pass net.core.rmem_max when
  // we may (root, as in the add-on); otherwise the kernel caps the plain request.
  int buf = 4 * 1024 * 1024;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);  // kernel receive times where available
  sockaddr_storage ss;
  socklen_t len;
  if (!fill_addr(job.family, job.bind_host, job.bind_port, &ss, &len) || bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    std::string m = std::string("bind ") + job.bind_host + ":" + std::to_string(job.bind_port) + ": " + std::strerror(errno);
    close(fd);
    throw std::runtime_error(m);
  }
  if (job.connect_peer) {
    if (!fill_addr(job.family, job.peer_host, job.peer_port, &ss, &len) || connect(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
      std::string m = std::string("connect ") + job.peer_host + ": " + std::strerror(errno);
      close(fd);
      throw std::runtime_error(m);
    }
  }
  sockaddr_storage mine;
  socklen_t ml = sizeof mine;
  getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &ml);
  *bound_port = ntohs(mine.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(mine).sin6_port : reinterpret_cast<sockaddr_in&>(mine).sin_port);
  return fd;
}

// Paced send: datagram n is due at t0 + n × interval (absolute deadlines on the monotonic clock, so a
// late wake-up is caught up in the next batch instead of drifting). Up to kBatch due datagrams go out in
// one sendmmsg. Sequence numbers are u32 big-endian at offset 0 (§7 "Data packet").
void udp_send_loop(const UdpJob& job, int fd, Control& ctl, double* counters, UdpStats& st) {
  const uint32_t size = std::max<uint32_t>(job.payload, 4 + (job.ts_offset >= 0 ? 12 : 0));
  std::vector<uint8_t> bufs(size_t(size) * kBatch, 0);
  std::vector<mmsghdr> msgs(kBatch);
  std::vector<iovec> iov(kBatch);
  sockaddr_storage peer;
  socklen_t plen = 0;
  if (!job.connect_peer) fill_addr(job.family, job.peer_host, job.peer_port, &peer, &plen);
  for (int i = 0; i < kBatch; i++) {
    iov[i] = {bufs.data() + size_t(i) * size, size};
    std::memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    if (!job.connect_peer) {
      msgs[i].msg_hdr.msg_name = &peer;
      msgs[i].msg_hdr.msg_namelen = plen;
    }
  }
  // The rate can change while running (btest's ×1.5 adaptation): JS writes counters[4]; a change restarts
  // the deadline schedule from now so the new rate applies at once.
  double rate = double(job.rate_bps);
  double interval = rate > 0 ? double(job.pace_bytes) * 8e9 / rate : 0;
  uint64_t base_t = job.t0, base_n = 0;
  uint32_t seq = job.seq_start;
  uint64_t n = 0, last_sample = 0;
  const uint64_t end = job.t0 + job.duration_ns;
  pollfd p[2] = {{fd, POLLOUT, 0}, {ctl.wake_fd, POLLIN, 0}};
  while (!ctl.aborted.load(std::memory_order_relaxed)) {
    uint64_t now = now_ns();
    if (now >= end) break;
    double want;
    __atomic_load(counters + 4, &want, __ATOMIC_RELAXED);
    if (want >= 0 && want != rate) {
      rate = want;
      interval = rate > 0 ? double(job.pace_bytes) * 8e9 / rate : 0;
      base_t = now;
      base_n = n;
    }
    int due = kBatch;
    if (interval > 0) {
      uint64_t next = base_t + uint64_t(double(n - base_n) * interval);
      if (next > now) {
        uint64_t wait = next - now;
        // Sleep in poll (wakes on abort) when far ahead; spin the last stretch for precision.
        if (wait > 2000000) {
          pollfd w = {ctl.wake_fd, POLLIN, 0};
          poll(&w, 1, int(wait / 1000000) - 1);
        }
        continue;
      }
      uint64_t behind = uint64_t(double(now - base_t) / interval) + 1 - (n - base_n);
      due = int(std::min<uint64_t>(behind, kBatch));
    }
    for (int i = 0; i < due; i++) {
      uint8_t* b = bufs.data() + size_t(i) * size;
      put_be32(b, seq + uint32_t(i));
      if (job.ts_offset >= 0) put_be64(b + job.ts_offset, now_ns());
    }
    int r = sendmmsg(fd, msgs.data(), unsigned(due), 0);
    if (r < 0) {
      if (errno == EAGAIN || errno == ENOBUFS) {
        poll(p, 2, 10);
        continue;
      }
      if (errno == ECONNREFUSED) continue;  // ICMP from a peer not (yet) listening: keep the pace
      st.err = Err::Io;
      st.message = std::string("sendmmsg: ") + std::strerror(errno);
      break;
    }
    seq += uint32_t(r);
    n += uint64_t(r);
    st.sent_packets += uint64_t(r);
    st.sent_bytes += uint64_t(r) * size;
    store(counters + 0, double(st.sent_bytes));
    uint64_t t = now_ns() - job.t0;
    if (st.tx_points.empty() || t - last_sample >= job.sample_ns) {
      st.tx_points.push_back(t);
      st.tx_points.push_back(st.sent_bytes);
      last_sample = t;
    }
  }
  st.tx_points.push_back(now_ns() - job.t0);
  st.tx_points.push_back(st.sent_bytes);
}

uint16_t port_of(const sockaddr_storage& a) {
  return ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(a).sin6_port
                                       : reinterpret_cast<const sockaddr_in&>(a).sin_port);
}

// The most datagrams a sender can have sent in one nanosecond beyond the slack (10 M/s: 120 Gbit/s of
// 1500-byte packets): a jump past it is not loss but someone else's datagram. The same
// bounds as src/measure/seq.ts.
constexpr double kMaxPacketsPerNs = 10e6 / 1e9;
constexpr uint32_t kSeqSlack = 4096;

// Receive with sequence tracking: a gap above the highest sequence seen counts as lost; a packet below
// it is either a late (reordered) one, which takes one back from lost, or a duplicate (a 4096-entry
// window of seen sequence numbers tells them apart). A jump further ahead than the time since the last
// datagram allows, or further behind than the window, is counted as foreign.
void udp_receive_loop(const UdpJob& job, int fd, Control& ctl, double* counters, UdpStats& st) {
  const size_t size = 65536;
  std::vector<uint8_t> bufs(size * kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  std::vector<iovec> iov(kBatch);
  std::vector<sockaddr_storage> from(kBatch);
  std::vector<uint8_t> ctrl(size_t(kBatch) * 64);
  sockaddr_storage peer;
  socklen_t plen;
  fill_addr(job.family, job.peer_host, job.peer_port, &peer, &plen);
  constexpr uint32_t kWin = 4096;
  std::vector<uint8_t> seen(kWin, 0);
  bool have = false;
  uint32_t high = 0;
  uint64_t high_at = 0;
  bool port_locked = false;
  uint16_t locked_port = 0;
  double prev_transit = 0, prev_arrival = 0, iat_sum = 0, iat_dev = 0;
  uint64_t iat_n = 0;
  bool have_transit = false;
  uint64_t last_sample = 0;
  const uint64_t end = job.t0 + job.duration_ns;
  std::vector<double> iats;
  iats.reserve(1 << 16);
  pollfd p[2] = {{fd, POLLIN, 0}, {ctl.wake_fd, POLLIN, 0}};
  while (!ctl.aborted.load(std::memory_order_relaxed)) {
    uint64_t now = now_ns();
    if (now >= end) break;
    for (int i = 0; i < kBatch; i++) {
      iov[i] = {bufs.data() + size_t(i) * size, size};
      std::memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      msgs[i].msg_hdr.msg_control = ctrl.data() + size_t(i) * 64;
      msgs[i].msg_hdr.msg_controllen = 64;
    }
    int r = recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNREFUSED) {
        int ms = int(std::min<uint64_t>((end - now) / 1000000 + 1, 100));
        poll(p, 2, ms);
        continue;
      }
      st.err = Err::Io;
      st.message = std::string("recvmmsg: ") + std::strerror(errno);
      break;
    }
    uint64_t fallback_at = now_ns();
    // SO_TIMESTAMPNS is wall-clock (CLOCK_REALTIME): kernel times are used for spacing only, shifted onto
    // our monotonic clock by one offset per batch.
    timespec mono, real;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &real);
    const int64_t offset = (int64_t(mono.tv_sec) - int64_t(real.tv_sec)) * 1000000000ll + (mono.tv_nsec - real.tv_nsec);
    for (int i = 0; i < r; i++) {
      const uint8_t* b = bufs.data() + size_t(i) * size;
      size_t len = msgs[i].msg_len;
      // Unconnected (NAT) mode: anything not from the peer's address is ignored.
      if (!job.connect_peer && !same_host(from[i], peer)) {
        st.foreign++;
        continue;
      }
      if (!job.connect_peer && job.lock_port && port_locked && port_of(from[i]) != locked_port) {
        st.foreign++;
        continue;
      }
      if (len < 4) continue;
      uint64_t at = fallback_at;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          timespec ts;
          std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
          at = uint64_t(int64_t(ts.tv_sec) * 1000000000ll + ts.tv_nsec + offset);
          st.kernel_ts = true;
        }
      }
      uint32_t seq = get_be32(b);
      if (have && int32_t(seq - high) > 0) {
        const double allowed = kSeqSlack + double(at > high_at ? at - high_at : 0) * kMaxPacketsPerNs;
        if (double(seq - high - 1) > allowed) {
          st.foreign++;
          continue;
        }
      } else if (have && high - seq >= kWin) {
        st.foreign++;
        continue;
      }
      if (!port_locked) {
        port_locked = true;
        locked_port = port_of(from[i]);
      }
      st.packets++;
      st.bytes += len;
      if (!have) {
        have = true;
        high = seq;
        high_at = at;
        seen[seq % kWin] = 1;
      } else if (int32_t(seq - high) > 0) {
        uint32_t gap = seq - high - 1;
        st.lost += gap;
        for (uint32_t k = 1; k <= std::min<uint32_t>(gap + 1, kWin); k++) seen[(high + k) % kWin] = 0;
        seen[seq % kWin] = 1;
        high = seq;
        high_at = at;
      } else if (seen[seq % kWin]) {
        st.duplicates++;
      } else {
        st.reordered++;
        if (st.lost) st.lost--;
        seen[seq % kWin] = 1;
      }
      if (job.ts_offset >= 0 && len >= size_t(job.ts_offset) + 8) {
        double transit = double(int64_t(at - get_be64(b + job.ts_offset)));
        if (have_transit) st.jitter_ns += (std::fabs(transit - prev_transit) - st.jitter_ns) / 16.0;
        prev_transit = transit;
        have_transit = true;
      }
      if (prev_arrival > 0 && iats.size() < iats.capacity()) iats.push_back(double(at) - prev_arrival);
      prev_arrival = double(at);
    }
    store(counters + 1, double(st.bytes));
    store(counters + 2, double(st.packets));
    store(counters + 3, double(st.lost));
    uint64_t t = now_ns() - job.t0;
    if (st.rx_points.empty() || t - last_sample >= job.sample_ns) {
      st.rx_points.push_back(t);
      st.rx_points.push_back(st.bytes);
      last_sample = t;
    }
  }
  for (double v : iats) iat_sum += v;
  iat_n = iats.size();
  if (iat_n) {
    double m = iat_sum / double(iat_n);
    for (double v : iats) iat_dev += std::fabs(v - m);
    st.iat_jitter_ns = iat_dev / double(iat_n);
  }
  st.rx_points.push_back(now_ns() - job.t0);
  st.rx_points.push_back(st.bytes);
}

}  // namespace bp
