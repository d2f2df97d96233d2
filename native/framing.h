// The receive-side framing parser of the TCP loop, on its own so a fuzzer can drive it without sockets
// (fuzz/framing_fuzz.cc). Plain C++, no allocation, no I/O.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "stream.h"

namespace bp {

// Incremental parser for the receive side. Payload bytes are counted against chunk boundaries; only the
// byte at each boundary is looked at (specs/rmbt.md §3.3). WebSocket frame headers are parsed here too;
// the mask is applied to that one byte only.
struct Parser {
  const Job& job;
  uint64_t pos = 0;  // payload bytes into the current chunk
  bool done = false;
  // WebSocket state (framed input only)
  bool in_payload = false;
  uint64_t frame_rem = 0;
  uint8_t hdr[14];
  size_t hdr_len = 0;
  uint8_t mask[4] = {0, 0, 0, 0};
  bool masked = false;
  unsigned mask_pos = 0;
  bool control = false;
  bool closed = false;
  bool error = false;

  explicit Parser(const Job& j) : job(j) {}

  size_t header_need() const {
    if (hdr_len < 2) return 2;
    size_t n = 2;
    uint8_t l7 = hdr[1] & 0x7f;
    if (l7 == 126) n += 2;
    if (l7 == 127) n += 8;
    if (hdr[1] & 0x80) n += 4;
    return n;
  }

  bool start_frame() {
    uint8_t op = hdr[0] & 0x0f;
    if (hdr[0] & 0x70) return false;
    masked = (hdr[1] & 0x80) != 0;
    if (masked != (job.ws == WsRole::Server)) return false;
    uint8_t l7 = hdr[1] & 0x7f;
    size_t p = 2;
    uint64_t len = l7;
    if (l7 == 126) {
      len = (uint64_t(hdr[2]) << 8) | hdr[3];
      p = 4;
    } else if (l7 == 127) {
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | hdr[2 + i];
      p = 10;
    }
    if (len > (64ull << 20)) return false;
    if (masked) std::memcpy(mask, hdr + p, 4);
    mask_pos = 0;
    control = op >= 8;
    if (op == 8) closed = true;
    if (op != 0 && op != 1 && op != 2 && op != 8 && op != 9 && op != 10) return false;
    frame_rem = len;
    in_payload = true;
    hdr_len = 0;
    if (frame_rem == 0) in_payload = false;
    return true;
  }

  // How many bytes starting now need not be looked at (safe to discard in the kernel).
  uint64_t skippable() const {
    if (job.ws != WsRole::None && (!in_payload || control)) return 0;
    uint64_t s = job.framing == Framing::Rmbt ? job.chunk_size - pos - 1 : UINT64_MAX;
    if (job.ws != WsRole::None) s = std::min(s, frame_rem);
    return s;
  }

  // Accounts for n payload bytes that were skipped without being read.
  void skipped(uint64_t n) {
    pos += n;
    if (job.ws != WsRole::None) {
      frame_rem -= n;
      mask_pos = (mask_pos + n) & 3;
      if (frame_rem == 0) in_payload = false;
    }
  }

  // Consumes framed (or raw) input; returns payload bytes counted and where parsing stopped (after the
  // final chunk, `done` is set and the rest of the buffer is leftover).
  uint64_t feed(const uint8_t* d, size_t n, bool framed, size_t* consumed) {
    uint64_t payload = 0;
    size_t i = 0;
    bool ws = framed && job.ws != WsRole::None;
    while (i < n && !done && !error) {
      if (ws && !in_payload) {
        hdr[hdr_len++] = d[i++];
        if (hdr_len >= 2 && hdr_len == header_need()) {
          if (!start_frame()) error = true;
          if (closed) break;
        }
        continue;
      }
      size_t avail = n - i;
      if (ws) avail = static_cast<size_t>(std::min<uint64_t>(avail, frame_rem));
      if (ws && control) {  // ping/pong payload: not data, ignore
        i += avail;
        skipped_ctrl(avail);
        continue;
      }
      size_t take = avail;
      bool boundary = false;
      if (job.framing == Framing::Rmbt) {
        uint64_t need = job.chunk_size - pos;
        if (avail >= need) {
          take = static_cast<size_t>(need);
          boundary = true;
        }
      }
      if (boundary) {
        uint8_t b = d[i + take - 1];
        if (ws && masked) b ^= mask[(mask_pos + take - 1) & 3];
        pos = 0;
        if (b == 0xff) done = true;
      } else {
        pos += take;
      }
      i += take;
      payload += take;
      if (ws) {
        frame_rem -= take;
        mask_pos = (mask_pos + take) & 3;
        if (frame_rem == 0) in_payload = false;
      }
    }
    *consumed = i;
    return payload;
  }

  void skipped_ctrl(size_t n) {
    frame_rem -= n;
    if (frame_rem == 0) {
      in_payload = false;
      control = false;
    }
  }
};

}  // namespace bp
