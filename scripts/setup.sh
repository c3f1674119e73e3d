#!/usr/bin/env bash
# Idempotent set-up for `npm start`, `npm test` and `npm run bench` on Debian 12 as root:
# Debian packages, npm dependencies (npm ci when the lockfile changed), the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Packages the project runs against: FUSE (fuse-native needs libfuse.so.2), a real
# redis-server, busybox-static for test root filesystems, bzip2/xz for compressed flists;
# containers: gcc + libc6-dev (libc.a) for the static g8init helper, nftables, iproute2, runc
# (the bench baseline); python3-redis runs the spec-written Python client in the agent tests;
# chromium is the real browser the web tests drive (playwright-core, no browser download).
PACKAGES=(libfuse2 fuse redis-server busybox-static bzip2 xz-utils ca-certificates time curl attr gcc libc6-dev nftables runc iproute2 util-linux python3 python3-redis chromium mmdebstrap fio qemu-utils nbdkit libnbd-bin nbd-client parted btrfs-progs dnsmasq-base qemu-system-x86 linux-image-cloud-amd64)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # The agent runs its own redis-server; the one the package starts as a service would hold
  # port 6379. Only when we installed it just now, so a redis someone set up is left alone.
  if [[ " ${missing[*]} " == *" redis-server "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now redis-server >&2 || true
  fi
fi

# npm ci only when package-lock.json changed since the last install.
stamp=node_modules/.g8os-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
  echo "$want" > "$stamp"
fi

# Build when any source is newer than the last build.
if [ ! -f dist/.built ] || [ -n "$(find src bench stress tsconfig.json package.json -newer dist/.built -print -quit 2>/dev/null)" ]; then
  echo "setup: building" >&2
  npx tsc -p tsconfig.json >&2
  touch dist/.built
fi

# g8init, the container helper (src/agent/native/g8init.c): C because Node cannot setns, unshare
# or pivot_root; static because it runs before and after pivoting into a container's root.
if [ ! -x dist/g8init ] || [ src/agent/native/g8init.c -nt dist/g8init ]; then
  echo "setup: building dist/g8init" >&2
  mkdir -p dist
  gcc -static -O2 -Wall -o dist/g8init src/agent/native/g8init.c >&2
fi

# The native block codec (src/flist/native/codec.c, an N-API addon): XXTEA in C, loaded by
# src/flist/xxtea.ts, which falls back to its JS when this file is absent.
if [ ! -f dist/native/codec.node ] || [ src/flist/native/codec.c -nt dist/native/codec.node ]; then
  echo "setup: building dist/native/codec.node" >&2
  mkdir -p dist/native
  gcc -O2 -Wall -shared -fPIC -I/usr/include/node -o dist/native/codec.node src/flist/native/codec.c >&2
fi
