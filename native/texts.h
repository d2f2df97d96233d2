// Text messages a WebSocket stream in text mode keeps for TypeScript (native/framing.h gathers them).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace bp {

// Text messages gathered whole in text mode (ndt7's measurements between its binary load), with the time
// they completed. Bounded: a message over the job's text_max is a protocol error, and beyond kMaxTexts or
// kMaxTextBytes in all the oldest are dropped (counted): the newest measurement is the one that matters.
struct TextMsg {
  uint64_t at;
  std::string body;
};
constexpr size_t kMaxTexts = 1024;
constexpr size_t kMaxTextBytes = 4u << 20;

struct Texts {
  std::vector<TextMsg> kept;
  size_t bytes = 0;
  uint64_t dropped = 0;
  void add(uint64_t at, std::string&& body) {
    while (!kept.empty() && (kept.size() >= kMaxTexts || bytes + body.size() > kMaxTextBytes)) {
      bytes -= kept.front().body.size();
      kept.erase(kept.begin());
      dropped++;
    }
    bytes += body.size();
    kept.push_back(TextMsg{at, std::move(body)});
  }
};

}  // namespace bp
