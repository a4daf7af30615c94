#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# Debian's mosquitto clients (an outside MQTT peer) and mosquitto (the
# benchmark's reference broker). Go modules come through `go mod download`.
set -euo pipefail
need=()
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
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
