# Bandwidth Probe: the Home Assistant add-on image, also runnable with plain Docker/Podman.
# BUILD_FROM: Home Assistant's multi-arch Debian base (s6-overlay, bashio); any Debian trixie root works
# (scripts/image-test.sh builds from a debootstrap rootfs). Supervisors before 2026.04 pass BUILD_FROM
# from build.yaml; newer ones use this default.
ARG BUILD_FROM=ghcr.io/home-assistant/base-debian:trixie

# ---- build stage: toolchain, npm ci (compiles the native loop and better-sqlite3), tsc -------------
FROM ${BUILD_FROM} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm libnode-dev g++ make python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Node headers from libnode-dev: node-gyp downloads nothing
ENV npm_config_nodedir=/usr npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json binding.gyp tsconfig.json tsconfig.build.json ./
COPY native native
# A build machine behind a TLS-intercepting proxy can lend its CA bundle as a build secret
# (`--secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt`); it is not kept in the image.
RUN --mount=type=secret,id=npm_ca,required=false \
    if [ -s /run/secrets/npm_ca ]; then export npm_config_cafile=/run/secrets/npm_ca; fi; npm ci
COPY src src
COPY public public
RUN npm run build \
 && npm prune --omit=dev \
 # better-sqlite3 needs only its addon at run time, not the SQLite sources and object files
 && mv node_modules/better-sqlite3/build/Release/better_sqlite3.node /tmp/ \
 && rm -rf node_modules/better-sqlite3/build node_modules/better-sqlite3/deps node_modules/better-sqlite3/src \
 && mkdir -p node_modules/better-sqlite3/build/Release \
 && mv /tmp/better_sqlite3.node node_modules/better-sqlite3/build/Release/ \
 && mkdir -p /out/build/Release \
 && cp build/Release/bandwidth_probe.node /out/build/Release/ \
 && cp -r dist public node_modules package.json /out/

# ---- runtime stage: Node and the app only ------------------------------------------------------------
FROM ${BUILD_FROM}
ARG BUILD_ARCH=amd64
ARG BUILD_VERSION=0.1.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/*
COPY --from=build /out /app
COPY addon/rootfs /
# The s6 service hands /data to this user and runs the probe as it (setpriv; see the run script).
RUN useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin probe
# The add-on keeps its state in /data (the Supervisor's persistent volume; mount one standalone).
# Standalone containers publish the page with -p 8099:8099, so it listens on every address; with no
# web credentials set the page then asks for the token generated into /data/web-token (DOCS.md).
ENV BANDWIDTH_PROBE_DATA_DIR=/data BANDWIDTH_PROBE_WEB_BIND=0.0.0.0 NODE_ENV=production
WORKDIR /app
EXPOSE 8099
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.BANDWIDTH_PROBE_WEB_PORT||8099)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Starts as root: s6-overlay's /init needs it, and /data/options.json belongs to the Supervisor. The
# service's run script gives /data to `probe` and starts the probe as that user (no raw sockets, ports
# above 1024: it needs no privileges).
LABEL \
  io.hass.name="Bandwidth Probe" \
  io.hass.description="Scheduled RMBT and MikroTik btest measurements as Home Assistant entities" \
  io.hass.type="app" \
  io.hass.arch="${BUILD_ARCH}" \
  io.hass.version="${BUILD_VERSION}" \
  io.hass.url="https://github.com/bandwidth-probe/bandwidth-probe" \
  org.opencontainers.image.title="Bandwidth Probe" \
  org.opencontainers.image.description="Scheduled RMBT and MikroTik btest measurements as Home Assistant entities" \
  org.opencontainers.image.version="${BUILD_VERSION}" \
  org.opencontainers.image.source="https://github.com/bandwidth-probe/bandwidth-probe" \
  org.opencontainers.image.licenses="Apache-2.0"
# With the HA base image the entrypoint is s6-overlay's /init, which starts
# /etc/s6-overlay/s6-rc.d/bandwidth-probe (serve with /data/options.json). Without s6 (a plain Debian
# base, or `docker run --entrypoint`), run the probe directly:
CMD []
