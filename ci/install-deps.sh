#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test the project offline.
# Idempotent: packages already present are not reinstalled. Needs root (or sudo).
set -euo pipefail

packages=(
  pkg-config          # finds libiscsi for libiscsi-sys
  libiscsi-dev        # libiscsi-sys links the initiator library for Rust tests
  libiscsi-bin        # iscsi-ls, iscsi-inq, iscsi-readcapacity16, iscsi-test-cu
  tgt tgt-glusterfs   # drop-in proof: tgtd's bs_glfs.so on the fake libgfapi
  fio                 # drop-in proof: fio's gfapi and gfapi_async engines on the fake
  libglusterfs-dev    # glfs.h: the C program test of the fake builds against Debian's header
  gdb                 # the gateway-stall-in-write and -mid-write scenarios hold a gateway inside a write
  attr                # getfattr: the failover scenarios log each brick copy's AFR changelog
  iproute2            # ss: the daemon's tests read the congestion control of the sockets it accepts
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not found: installing it from crates.io (a few minutes)"
  cargo install --locked cargo-nextest
fi

if ! cargo deb --version >/dev/null 2>&1; then
  echo "cargo-deb not found: installing it from crates.io (a few minutes; cargo xtask package)"
  cargo install --locked cargo-deb --version 3.8.0
fi
