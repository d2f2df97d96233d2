#!/usr/bin/env bash
# Builds the native addon for linux-x64, linux-arm64 and linux-arm (armv7 hard-float) with prebuildify
# and Debian's cross compilers, into prebuilds/<platform>-<arch>/. Node-API: one binary per platform
# serves every Node >= 20. Headers come from the local Node install (no download): npm_config_nodedir.
# Usage: scripts/prebuild.sh [x64|arm64|arm ...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(x64 arm64 arm)

for arch in "${targets[@]}"; do
  case "$arch" in
    x64)
      if [ "$(uname -m)" = x86_64 ]; then unset CC CXX LINK AR; prefix=""; else prefix=x86_64-linux-gnu-; fi ;;
    arm64) prefix=aarch64-linux-gnu- ;;
    arm) prefix=arm-linux-gnueabihf- ;;
    *) echo "unknown arch $arch" >&2; exit 2 ;;
  esac
  echo "== prebuild linux-$arch"
  env ${prefix:+CC=${prefix}gcc CXX=${prefix}g++ LINK=${prefix}g++ AR=${prefix}ar} \
    PREBUILD_STRIP_BIN="${prefix}strip" PREBUILD_ARMV=$([ "$arch" = arm ] && echo 7 || echo "") \
    npx prebuildify --napi --strip --arch "$arch" $([ "$arch" = arm ] && echo --tag-armv) >/dev/null
done
# prebuildify leaves its last (possibly foreign-arch) build in build/; node-gyp-build would prefer it over
# prebuilds/, so remove it.
rm -rf build
ls -l prebuilds/*/
