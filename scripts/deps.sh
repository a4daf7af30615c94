#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# Debian's mosquitto clients (an outside MQTT peer), mosquitto (the
# benchmark's reference broker) and chromium (the dashboard's browser tests).
# Go modules come through `go mod download`.
set -euo pipefail
need=()
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# Debian's chromium: the dashboard's end-to-end tests drive it headless (e2e/dashboard_test.go).
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
# Raspberry Pi provisioning: qemu-user-static runs the arm/arm64 gateway builds
# (cmd/outpost-gateway/qemu_test.go); dosfstools and mtools check, from outside,
# the FAT boot partitions internal/provision writes in pure Go.
command -v qemu-arm-static >/dev/null 2>&1 && command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v fsck.vfat >/dev/null 2>&1 || [ -x /usr/sbin/fsck.vfat ] || need+=(dosfstools)
command -v mtype >/dev/null 2>&1 || need+=(mtools)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian package starts a system mosquitto on :1883; tests never use it.
  systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
go mod download
