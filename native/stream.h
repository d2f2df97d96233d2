// One stream's job and outcome, shared by the TCP loops. Plain data: no Napi types here, so the loops
// run on their own threads without ever touching the JS engine.
#pragma once
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "texts.h"

struct ssl_st;

namespace bp {

enum class Mode { Receive, Send };
enum class Framing { Raw, Rmbt };
// WebSocket role of this side: None, Client (receives unmasked frames), Server (receives masked frames).
enum class WsRole { None, Client, Server };

// Error codes map to the TypeScript catalogue (src/engine/native.ts).
enum class Err { Ok = 0, Aborted, Stalled, Timeout, PeerClosed, Protocol, Io };

struct Slice {
  const uint8_t* data;
  size_t len;
};

struct Job {
  Mode mode = Mode::Receive;
  Framing framing = Framing::Rmbt;
  WsRole ws = WsRole::None;
  uint32_t chunk_size = 4096;
  uint64_t sample_ns = 10000000;
  uint64_t idle_ns = 10000000000ull;
  uint64_t max_ns = 60000000000ull;
  uint64_t report_ns = 0;    // RMBT PUT feedback interval, 0 = none
  uint64_t duration_ns = 0;  // send: stop after this long (0 = use count)
  uint64_t count = 0;        // send: number of chunks
  uint32_t payload_size = 0; // send: payload bytes per chunk (what counts)
  bool trunc = true;          // receive: discard unneeded bytes in the kernel (MSG_TRUNC)
  bool lowat = true;          // receive: batch wake-ups with SO_RCVLOWAT
  uint64_t rate_bps = 0;      // send: pace chunks to this rate (0 = as fast as TCP takes them)
  bool count_inbound = false; // send: what arrives meanwhile is data to count (btest TCP both), not words
  // WebSocket text mode (ndt7): text messages up to this many bytes are kept for TypeScript, pings are
  // answered and a close frame is echoed; 0 = text frames count as data (RMBT over WebSocket).
  uint32_t text_max = 0;
  uint64_t max_frame = 0;       // largest WebSocket frame accepted (0 = 64 MiB)
  uint32_t scale_divisor = 0;   // send: the next larger set is used once its size <= sent / divisor
  uint64_t close_wait_ns = 0;   // send, text mode: after the last message a close frame, then read until
                                // the peer's close (its last measurement comes before it) or this long
};

struct TlsIo;

// A larger set of pre-framed messages a scaling send grows into (ndt7's upload).
struct SetSpec {
  uint32_t size = 0;  // payload bytes per message
  std::vector<Slice> cont;
  Slice fin{nullptr, 0};
};

struct StreamSpec {
  int fd = -1;
  // TLS streams: the session's SSL* and record transport; both null for plain TCP.
  ssl_st* ssl = nullptr;
  TlsIo* tls = nullptr;
  uint64_t t0 = 0;
  std::vector<uint8_t> pending;  // payload bytes the protocol reader had already buffered
  std::vector<Slice> cont;       // send: pre-framed "more follows" chunks
  Slice fin{nullptr, 0};         // send: pre-framed last chunk
  std::vector<SetSpec> grow;     // send with scale_divisor: the larger sets, smallest first
  // text mode: where TypeScript's WebSocket decoder stopped (inside binary data or between frames)
  std::vector<uint8_t> ws_header;  // header bytes read so far
  uint64_t ws_remaining = 0;       // payload bytes left in the binary frame under way
  bool ws_fin = true;              // that frame's FIN bit (false: a fragmented binary message goes on)
  bool ws_masked = false;
  uint8_t ws_mask[4] = {0, 0, 0, 0};
  unsigned ws_mask_pos = 0;
};

struct Outcome {
  std::vector<uint64_t> points;  // t0, b0, t1, b1, ...
  uint64_t bytes = 0;
  uint64_t end_ns = 0;
  uint64_t last_ns = 0;  // the last payload bytes, ns since t0
  std::vector<uint8_t> leftover;  // bytes read past the end (or inbound while sending)
  bool leftover_decoded = false;  // true: payload already unframed (it came from `pending`), else raw socket bytes
  Err err = Err::Ok;
  std::string message;
  bool used_trunc = false;
  uint64_t rx_bytes = 0;           // count_inbound: data received while sending
  std::vector<uint64_t> rx_points;  // t, cumulative rx bytes
  // text mode: the text messages (times in ns since t0), whether the close handshake happened, and
  // whether the stream stopped inside a message (then it cannot be decoded on the TypeScript side)
  Texts texts;
  bool ws_closed = false;
  bool mid_message = false;
};

// Cross-thread control of one run: abort flag plus an eventfd that wakes every poll().
struct Control {
  std::atomic<bool> aborted{false};
  int wake_fd = -1;
  // Asks every loop of the run to stop: the flag for loops between calls, the eventfd for those in poll().
  void stop() {
    aborted.store(true);
    if (wake_fd >= 0) {
      uint64_t one = 1;
      ssize_t ignored = write(wake_fd, &one, sizeof one);
      (void)ignored;
    }
  }
};

// Runs one stream to completion on the calling thread. `counter` is the live byte count JS reads.
void run_stream(const Job& job, const StreamSpec& spec, Control& ctl, double* counter, Outcome& out);

}  // namespace bp
