// libFuzzer target for the native receive framing (native/framing.h): RMBT chunk counting, raw streams
// and WebSocket frames in both roles, and text mode (ndt7: text messages kept, pings, close, fragments).
// Built with AddressSanitizer and UBSan by scripts/fuzz.sh.
//
// The input's first four bytes pick the job (framing, WebSocket role, chunk size) and how the rest is cut
// into reads; the rest is the byte stream a peer would send. The oracle is differential: the same stream
// fed (a) in one read, (b) one byte per read and (c) in the cut pattern with kernel-side skips
// (what MSG_TRUNC does in the loop: bytes the parser says it need not see are counted, never shown to
// it) must give the same payload count, the same end position and the same verdict. Any difference, an
// out-of-bounds access or UB aborts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>

#include "framing.h"

namespace {

struct Verdict {
  uint64_t payload = 0;
  size_t end = 0;  // stream offset where parsing stopped (after the last chunk, a close frame or an error)
  bool done = false, closed = false, error = false;
  // text mode: every text message in order, and the newest ping's payload (only the newest is answered,
  // so how many pongs depends on the reads; which one is last does not)
  std::string texts;
  size_t ntexts = 0;
  std::string last_ping;
};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "framing oracle failed: %s\n", what);
    std::abort();
  }
}

void invariants(const bp::Parser& p, const bp::Job& job) {
  if (job.framing == bp::Framing::Rmbt) check(p.pos < job.chunk_size, "pos stays inside a chunk");
  check(p.hdr_len <= sizeof p.hdr, "header bytes fit");
  check(p.mask_pos < 4, "mask position");
  check(p.ctrl_len <= sizeof p.ctrl, "control payload fits");
  if (job.text_max) check(p.text.size() <= job.text_max, "text stays within its bound");
}

// Feeds `data` in reads of the sizes `cut` gives (cycled); with `skips`, every other read first lets the
// "kernel" discard what skippable() allows.
Verdict feed(const bp::Job& job, const uint8_t* data, size_t n, const uint8_t* cut, size_t ncut, bool skips) {
  bp::Parser p(job);
  bp::Texts texts;
  p.texts = &texts;
  Verdict v;
  size_t off = 0;
  size_t k = 0;
  while (off < n && !p.done && !p.error && !p.closed) {
    size_t want = n - off;
    if (ncut) want = std::min<size_t>(want, size_t(cut[k % ncut]) + 1);
    if (skips && (k & 1)) {
      uint64_t s = p.skippable();
      if (s > 0) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(s, n - off));
        if (ncut) take = std::min<size_t>(take, size_t(cut[(k + 1) % ncut]) * 37 + 1);
        p.skipped(take);
        v.payload += take;
        off += take;
        k++;
        invariants(p, job);
        continue;
      }
    }
    size_t used = 0;
    v.payload += p.feed(data + off, want, true, &used);
    if (p.pong_due) {
      v.last_ping.assign(reinterpret_cast<const char*>(p.pong), p.pong_len);
      p.pong_due = false;
    }
    check(used <= want, "consumed within the read");
    if (!p.done && !p.error && !p.closed) check(used == want, "a read is consumed whole unless parsing stopped");
    off += used;
    k++;
    invariants(p, job);
  }
  v.end = off;
  v.done = p.done;
  v.closed = p.closed;
  v.error = p.error;
  check(texts.kept.size() <= bp::kMaxTexts && texts.bytes <= bp::kMaxTextBytes, "kept texts bounded");
  v.ntexts = texts.kept.size() + texts.dropped;
  for (const auto& t : texts.kept) {
    v.texts += t.body;
    v.texts += '\0';
  }
  return v;
}

bool same(const Verdict& a, const Verdict& b) {
  return a.payload == b.payload && a.end == b.end && a.done == b.done && a.closed == b.closed && a.error == b.error &&
         a.texts == b.texts && a.ntexts == b.ntexts && a.last_ping == b.last_ping;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  bp::Job job;
  job.framing = (data[0] & 1) ? bp::Framing::Raw : bp::Framing::Rmbt;
  unsigned role = (data[0] >> 1) % 3;
  job.ws = role == 0 ? bp::WsRole::None : role == 1 ? bp::WsRole::Client : bp::WsRole::Server;
  // Chunk sizes from 1 byte up: small ones put boundaries everywhere, the real ones (≥ 4096) are reached
  // through the high bits.
  uint32_t cs = (uint32_t(data[1]) << 8) | data[2];
  job.chunk_size = (data[0] & 0x80) ? 4096 + cs : 1 + (cs % 64);
  // text mode with a small bound, so that oversized messages are reached too
  if (data[0] & 0x40) job.text_max = 1 + data[2];
  const uint8_t* cut = data + 3;
  size_t ncut = 1 + (data[3] % 8);
  const uint8_t* body = data + 4;
  size_t n = size - 4;
  if (ncut > n) ncut = n;

  Verdict whole = feed(job, body, n, nullptr, 0, false);
  static const uint8_t one = 0;
  Verdict bytes = feed(job, body, n, &one, 1, false);
  Verdict cuts = feed(job, body, n, ncut ? body : &one, ncut ? ncut : 1, true);
  check(same(whole, bytes), "one read vs one byte per read");
  check(same(whole, cuts), "one read vs reads with kernel skips");
  check(whole.end <= n, "end inside the stream");
  if (job.framing == bp::Framing::Raw && job.ws == bp::WsRole::None) {
    check(!whole.done && !whole.error && whole.payload == n, "a raw stream counts every byte");
  }
  if (job.ws == bp::WsRole::None) check(!whole.error && !whole.closed, "no frame errors without WebSocket");
  return 0;
}
