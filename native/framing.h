// The receive-side framing parser of the TCP loop, on its own so a fuzzer can drive it without sockets
// (fuzz/framing_fuzz.cc). Plain C++, no I/O; the only allocations are text messages kept for TypeScript.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "stream.h"
#include "texts.h"

namespace bp {

// Incremental parser for the receive side. Payload bytes are counted against chunk boundaries; only the
// byte at each boundary is looked at (specs/rmbt.md §3.3). WebSocket frame headers are parsed here too;
// the mask is applied to that one byte only.
//
// Text mode (job.text_max > 0, ndt7): RFC 6455 as a full receiver. Binary payload is counted as before;
// text messages (fragments joined) are unmasked and gathered into `texts`; control frames are read whole:
// a ping's payload waits in `pong` for the loop to answer (only the newest, which RFC 6455 §5.5.3 allows),
// a close frame sets `closed` after its payload. Fragmentation and control-frame rules are checked.
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
  const char* error_msg = nullptr;
  char error_buf[80];
  // text mode
  Texts* texts = nullptr;  // where finished text messages go (the loop owns it)
  uint64_t at = 0;         // the time the loop read the bytes being fed
  uint8_t opcode = 0;
  bool fin = true;
  bool msg_open = false;  // a fragmented data message is under way
  bool msg_text = false;  // the data message under way is text
  std::string text;
  uint8_t ctrl[125];
  size_t ctrl_len = 0;
  bool pong_due = false;
  uint8_t pong[125];
  size_t pong_len = 0;

  explicit Parser(const Job& j) : job(j) {}

  // Text mode: continues where TypeScript's decoder stopped (WsDecoder.handOver): inside a binary frame
  // with `rem` payload bytes left, or with `hlen` header bytes of the next frame read.
  void resume(const uint8_t* h, size_t hlen, uint64_t rem, bool frame_fin, const uint8_t* key, unsigned key_pos) {
    fin = frame_fin;
    msg_open = !frame_fin;
    msg_text = false;
    if (rem > 0) {
      in_payload = true;
      frame_rem = rem;
      control = false;
      opcode = 2;
      masked = key != nullptr;
      if (key) std::memcpy(mask, key, 4);
      mask_pos = key_pos & 3;
      return;
    }
    hdr_len = std::min(hlen, sizeof hdr - 1);
    std::memcpy(hdr, h, hdr_len);
  }

  bool text_mode() const { return job.text_max > 0 && job.ws != WsRole::None; }
  bool in_text() const { return in_payload && !control && msg_text; }
  // Between messages: a stream handed back here decodes correctly on the other side.
  bool at_message_start() const { return !in_payload && hdr_len == 0 && !msg_open; }

  size_t header_need() const {
    if (hdr_len < 2) return 2;
    size_t n = 2;
    uint8_t l7 = hdr[1] & 0x7f;
    if (l7 == 126) n += 2;
    if (l7 == 127) n += 8;
    if (hdr[1] & 0x80) n += 4;
    return n;
  }

  // Why the stream was refused, for the error message.
  const char* why() const { return error_msg ? error_msg : "malformed WebSocket frame"; }

  bool fail(const char* why) {
    error_msg = why;
    return false;
  }

  bool start_frame() {
    uint8_t op = hdr[0] & 0x0f;
    if (hdr[0] & 0x70) return fail("WebSocket frame with reserved bits (compression is not negotiated)");
    masked = (hdr[1] & 0x80) != 0;
    if (masked != (job.ws == WsRole::Server)) return fail(masked ? "masked frame from a server" : "unmasked frame from a client");
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
    if (len > (job.max_frame ? job.max_frame : (64ull << 20))) return fail("WebSocket frame too large");
    if (masked) std::memcpy(mask, hdr + p, 4);
    mask_pos = 0;
    control = op >= 8;
    if (op != 0 && op != 1 && op != 2 && op != 8 && op != 9 && op != 10) return fail("unknown WebSocket opcode");
    opcode = op;
    fin = (hdr[0] & 0x80) != 0;
    if (text_mode()) {
      if (control && (len > 125 || !fin)) return fail("WebSocket control frame too large or fragmented");
      if (!control) {
        if ((op == 0) != msg_open) return fail(op == 0 ? "WebSocket continuation without a message" : "WebSocket message inside a fragmented one");
        if (op != 0) msg_text = op == 1;
        msg_open = !fin;
        if (msg_text && text.size() + len > job.text_max) {
          std::snprintf(error_buf, sizeof error_buf, "WebSocket text message longer than %u bytes", job.text_max);
          return fail(error_buf);
        }
      }
      ctrl_len = 0;
    } else if (op == 8) {
      closed = true;
    }
    frame_rem = len;
    in_payload = true;
    hdr_len = 0;
    if (frame_rem == 0) end_frame();
    return true;
  }

  // A frame's last payload byte was read (text mode: control frames and text messages take effect).
  void end_frame() {
    in_payload = false;
    if (!text_mode()) return;
    if (control) {
      if (opcode == 9) {
        std::memcpy(pong, ctrl, ctrl_len);
        pong_len = ctrl_len;
        pong_due = true;
      } else if (opcode == 8) {
        closed = true;
      }
      control = false;
    } else if (msg_text && fin) {
      if (texts) texts->add(at, std::move(text));
      text = std::string();
      msg_text = false;
    }
  }

  // How many bytes starting now need not be looked at (safe to discard in the kernel).
  uint64_t skippable() const {
    if (job.ws != WsRole::None && (!in_payload || control || in_text())) return 0;
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
      if (frame_rem == 0) end_frame();
    }
  }

  // Unmasked copy of n payload bytes into dst (control and text payloads, text mode).
  void take_masked(uint8_t* dst, const uint8_t* src, size_t n) {
    for (size_t k = 0; k < n; k++) dst[k] = masked ? src[k] ^ mask[(mask_pos + k) & 3] : src[k];
    mask_pos = (mask_pos + n) & 3;
    frame_rem -= n;
  }

  // Consumes framed (or raw) input; returns payload bytes counted and where parsing stopped (after the
  // final chunk, `done` is set and the rest of the buffer is leftover).
  uint64_t feed(const uint8_t* d, size_t n, bool framed, size_t* consumed) {
    uint64_t payload = 0;
    size_t i = 0;
    bool ws = framed && job.ws != WsRole::None;
    while (i < n && !done && !error && !closed) {
      if (ws && !in_payload) {
        hdr[hdr_len++] = d[i++];
        if (hdr_len >= 2 && hdr_len == header_need()) {
          if (!start_frame()) error = true;
        }
        continue;
      }
      size_t avail = n - i;
      if (ws) avail = static_cast<size_t>(std::min<uint64_t>(avail, frame_rem));
      if (ws && text_mode() && (control || msg_text)) {
        if (control) {
          take_masked(ctrl + ctrl_len, d + i, avail);
          ctrl_len += avail;
        } else {
          size_t at_len = text.size();
          text.resize(at_len + avail);
          take_masked(reinterpret_cast<uint8_t*>(&text[at_len]), d + i, avail);
        }
        i += avail;
        if (frame_rem == 0) end_frame();
        continue;
      }
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
        if (frame_rem == 0) end_frame();
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
