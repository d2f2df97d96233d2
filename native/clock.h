// Monotonic time in ns on CLOCK_MONOTONIC: the clock libuv's uv_hrtime (process.hrtime) reads, so
// t0 values from TypeScript and timestamps taken here share one time base.
#pragma once
#include <cstdint>
#include <ctime>

namespace bp {

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace bp
