#!/usr/bin/env bash
# Builds the libFuzzer target for the native receive framing (fuzz/framing_fuzz.cc) with ASan + UBSan and
# runs it for FUZZ_SECONDS (default 60). Needs clang and libclang-rt (Debian: clang, libclang-rt-14-dev).
# A finding leaves a crash-* file under build-fuzz/ and makes this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${FUZZ_SECONDS:-60}"
CXX="${FUZZ_CXX:-$(command -v clang++ || command -v clang++-14)}"
mkdir -p build-fuzz/corpus
"$CXX" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Inative fuzz/framing_fuzz.cc -o build-fuzz/framing_fuzz
# Seeds: an RMBT stream of three 8-byte chunks (last one 0xff), a raw stream, masked and unmasked
# WebSocket frames carrying chunks, and an ndt7-like stream (a ping, a fragmented text message, binary
# data, a close) for text mode.
node -e '
const fs = require("fs"); const d = "build-fuzz/corpus/";
const chunk = (n, last) => { const b = Buffer.alloc(n, 0x41); b[n - 1] = last ? 0xff : 0; return b; };
const rmbt = Buffer.concat([chunk(8, 0), chunk(8, 0), chunk(8, 1), Buffer.from("TIME 123\n")]);
const ws = (payload, mask) => { const h = [0x82, (mask ? 0x80 : 0) | payload.length]; const m = [1, 2, 3, 4];
  const p = Buffer.from(payload.map((x, i) => (mask ? x ^ m[i % 4] : x)));
  return Buffer.concat([Buffer.from(h), mask ? Buffer.from(m) : Buffer.alloc(0), p]); };
fs.writeFileSync(d + "seed-rmbt", Buffer.concat([Buffer.from([0x00, 0x00, 0x07, 0x03]), rmbt]));
fs.writeFileSync(d + "seed-raw", Buffer.concat([Buffer.from([0x01, 0, 0, 0]), Buffer.alloc(64, 7)]));
fs.writeFileSync(d + "seed-ws-client", Buffer.concat([Buffer.from([0x02, 0x00, 0x07, 0x02]), ws(rmbt.subarray(0, 24), false), ws(Buffer.from([0x88, 0x00]), false)]));
const frame = (b0, payload) => Buffer.concat([Buffer.from([b0, payload.length]), Buffer.from(payload)]);
fs.writeFileSync(d + "seed-ws-text", Buffer.concat([Buffer.from([0x45, 0x00, 0x40, 0x03]), frame(0x89, "ping-1"),
  frame(0x01, "{\"TCPInfo\":"), frame(0x80, "{\"RTT\":1}}"), frame(0x82, "binary"), frame(0x88, "\x03\xe8")]));
fs.writeFileSync(d + "seed-ws-server", Buffer.concat([Buffer.from([0x04, 0x00, 0x07, 0x05]), ws(rmbt.subarray(0, 12), true), ws(rmbt.subarray(12, 24), true)]));
'
cd build-fuzz
./framing_fuzz -max_total_time="$SECONDS_TO_RUN" -max_len=8192 -print_final_stats=1 -timeout=10 \
  -artifact_prefix=./ corpus 2>&1 | tail -25
