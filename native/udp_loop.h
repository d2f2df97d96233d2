// Paced UDP send and sequence-tracking receive on one socket the loop owns (btest UDP, specs/btest.md §7).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "stream.h"

namespace bp {

struct UdpJob {
  // endpoint: bind locally, send to / accept from the peer
  std::string bind_host;
  uint16_t bind_port = 0;
  std::string peer_host;
  uint16_t peer_port = 0;
  bool connect_peer = true;  // false: accept datagrams from any source port of the peer's address (NAT)
  bool lock_port = false;    // unconnected: after the first datagram taken, only that source port
  int family = 4;
  // send side (rate 0 = as fast as possible); pacing on absolute deadlines from t0
  bool send = false;
  uint32_t payload = 1472;     // UDP payload bytes per datagram
  uint32_t pace_bytes = 1500;  // bytes each datagram counts for in the rate (btest: the IP packet size)
  uint64_t rate_bps = 0;
  uint32_t seq_start = 0;
  int ts_offset = -1;  // where the send timestamp (u64 BE ns) goes, -1 = none
  // receive side
  bool receive = false;
  uint64_t duration_ns = 0;  // both sides stop (OK) after this long
  uint64_t t0 = 0;
  uint64_t sample_ns = 100000000;
};

struct UdpStats {
  uint64_t sent_packets = 0, sent_bytes = 0;
  uint64_t packets = 0, bytes = 0, lost = 0, duplicates = 0, reordered = 0, foreign = 0;
  double jitter_ns = 0;      // RFC 3550 §6.4.1 from send timestamps (when present)
  double iat_jitter_ns = 0;  // mean |inter-arrival − mean inter-arrival| (no timestamps needed)
  bool kernel_ts = false;
  std::vector<uint64_t> rx_points, tx_points;  // t, cumulative bytes
  Err err = Err::Ok;
  std::string message;
  uint16_t local_port = 0;
};

// Live counters JS reads (a Float64Array): [tx bytes, rx bytes, rx packets, lost, send rate (written by JS)].
// Opens the socket (throws std::runtime_error with a message on failure) and returns the fd.
int udp_open(const UdpJob& job, uint16_t* bound_port);
void udp_send_loop(const UdpJob& job, int fd, Control& ctl, double* counters, UdpStats& st);
void udp_receive_loop(const UdpJob& job, int fd, Control& ctl, double* counters, UdpStats& st);

}  // namespace bp
