#!/usr/bin/env bash
# Builds the add-on image without a Docker daemon and proves it works: a Debian trixie root made with
# debootstrap is imported as BUILD_FROM (registries for base images are unreachable here), `podman build`
# (vfs storage, runc) builds the Dockerfile, and the container must serve the page and complete a
# measurement against the probe's own loopback servers. Usage: scripts/image-test.sh [amd64|arm64]
# (arm64 runs under qemu-user; slow). Root only. Prints build time, run time and image size.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH="${1:-amd64}"
CACHE=.cache/image
mkdir -p "$CACHE"
PODMAN=(podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs)
BASE="localhost/bp-trixie-base:$ARCH"
IMAGE="localhost/bandwidth-probe:$ARCH"
t0=$(date +%s)

if [ "$ARCH" != amd64 ]; then
  # qemu-user for foreign RUN steps (binfmt_misc is not mounted by default in this environment)
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable >/dev/null 2>&1 || true
fi

if ! "${PODMAN[@]}" image exists "$BASE"; then
  rootfs="$CACHE/rootfs-$ARCH"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --arch="$ARCH" trixie "$rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap-$ARCH.log"
  # debootstrap leaves the downloaded packages and lists behind; a base image has neither
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "${PODMAN[@]}" import --os linux --arch "$ARCH" - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi
t1=$(date +%s)
# This machine reaches the npm registry through a proxy whose CA only the host trusts: lend its bundle.
secret=()
[ -s /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt)
"${PODMAN[@]}" build --platform "linux/$ARCH" --build-arg "BUILD_FROM=$BASE" --build-arg "BUILD_ARCH=$ARCH" \
  "${secret[@]}" -t "$IMAGE" . >"$CACHE/build-$ARCH.log" 2>&1 || { tail -40 "$CACHE/build-$ARCH.log"; exit 1; }
t2=$(date +%s)

port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
data=$(mktemp -d)
# (explicit limits: runc here may not raise them to the host's values)
# The add-on's own s6 run script (without s6, which this base has not): it hands /data to `probe` and
# starts the probe as that user; an options file as the Supervisor writes it, owned by root.
echo '{}' > "$data/options.json"
cid=$("${PODMAN[@]}" run -d --network host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 -v "$data:/data" --entrypoint /bin/sh \
  -e BANDWIDTH_PROBE_WEB_BIND=127.0.0.1 -e BANDWIDTH_PROBE_WEB_PORT="$port" -e BANDWIDTH_PROBE_MQTT_ENABLED=off \
  "$IMAGE" /etc/s6-overlay/s6-rc.d/bandwidth-probe/run)
cleanup() { "${PODMAN[@]}" rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "$data"; }
trap cleanup EXIT
limit=$([ "$ARCH" = amd64 ] && echo 120 || echo 900)
status=""
for _ in $(seq 1 "$limit"); do
  status=$(curl -fsS "http://127.0.0.1:$port/api/status" 2>/dev/null || true)
  if echo "$status" | grep -q '"status":"ok"'; then break; fi
  if echo "$status" | grep -q '"status":"failed"'; then break; fi
  sleep 1
done
t3=$(date +%s)
echo "$status" | grep -q '"status":"ok"' || {
  echo "FAIL: no ok run in the container"; echo "$status"; "${PODMAN[@]}" logs "$cid" | tail -20; exit 1; }
curl -fsS "http://127.0.0.1:$port/" | grep -q '<title>Bandwidth Probe</title>' || { echo "FAIL: no page"; exit 1; }
# The self-test goes over TLS where the native loop carries it: a native run with a negotiated cipher
# means native TLS works with Debian trixie's nodejs and its shared libssl3 (issue 16).
echo "$status" | grep -q '"engine":"native"' || { echo "FAIL: the loopback run did not use the native engine"; echo "$status"; exit 1; }
run_id=$(echo "$status" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).targets[0].last.id))')
tls=$(curl -fsS "http://127.0.0.1:$port/api/runs/$run_id" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);const x=r.result??r;console.log(x.server?.tls?`${x.server.tls.version} ${x.server.tls.cipher}`:"")})')
[ -n "$tls" ] || { echo "FAIL: the loopback run in the container did not go over native TLS"; exit 1; }
# the probe runs as `probe`, not root; the options file stays root's
uid=$("${PODMAN[@]}" exec "$cid" sh -c 'grep ^Uid: /proc/1/status' | awk '{print $2}')
puid=$("${PODMAN[@]}" exec "$cid" id -u probe)
[ "$uid" = "$puid" ] && [ "$uid" != 0 ] || { echo "FAIL: the probe runs as uid $uid, not probe ($puid)"; exit 1; }
[ "$(stat -c %u "$data/options.json")" = 0 ] || { echo "FAIL: options.json changed owner"; exit 1; }
"${PODMAN[@]}" stop -t 10 "$cid" >/dev/null
code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$cid")
[ "$code" = 0 ] || { echo "FAIL: exit code $code after SIGTERM"; exit 1; }
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
dl=$(echo "$status" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const t=JSON.parse(s).targets[0].last;console.log(`${t.download_mbps} / ${t.upload_mbps} Mbit/s, engine ${t.engine}`)})')
echo "IMAGE ok ($ARCH): base $((t1 - t0)) s, build $((t2 - t1)) s, first run ok after $((t3 - t2)) s;" \
  "loopback run $dl over $tls; image $((size / 1000000)) MB"
