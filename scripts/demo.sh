#!/usr/bin/env bash
# make demo: a hub (and a gateway on simulated sensors, once built) on loopback.
# Everything lives in .demo/; Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
D=.demo
mkdir -p "$D"
MQTT=127.0.0.1:${OUTPOST_DEMO_MQTT_PORT:-8883}
HTTP=127.0.0.1:${OUTPOST_DEMO_HTTP_PORT:-8443}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

bin/outpost-hub serve --data-dir "$D/hub" --mqtt-listen "$MQTT" --http-listen "$HTTP" >"$D/hub.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  [ -f "$D/hub/admin.token" ] && curl -sf --cacert "$D/hub/pki/ca.crt" "https://$HTTP/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
export OUTPOST_HUB="https://$HTTP" OUTPOST_CA="$D/hub/pki/ca.crt" OUTPOST_ADMIN_TOKEN="$(cat "$D/hub/admin.token")"
bin/outpostctl token issue --device demo-gw --profile gateway --ttl 720h >"$D/demo-gw.token" 2>/dev/null

if [ -x bin/outpost-gateway ] && [ -f configs/gateway.example.yaml ]; then
  bin/outpost-gateway run --config configs/gateway.example.yaml --hub "$MQTT" --ca "$OUTPOST_CA" \
    --token-file "$D/demo-gw.token" --data-dir "$D/gateway" >"$D/gateway.log" 2>&1 &
  pids+=($!)
fi

cat <<EOT

Outpost demo is running (logs in $D/).
  Dashboard / API : https://$HTTP/        (CA: $OUTPOST_CA; log in with the admin token)
  MQTT (TLS)      : $MQTT
  Admin token     : $OUTPOST_ADMIN_TOKEN
  Device token    : $D/demo-gw.token  (device demo-gw, profile gateway)

Try, in another shell:
  export OUTPOST_HUB=$OUTPOST_HUB OUTPOST_CA=$OUTPOST_CA OUTPOST_ADMIN_TOKEN=$OUTPOST_ADMIN_TOKEN
  bin/outpostctl devices list
  curl --cacert $OUTPOST_CA -H "Authorization: Bearer \$OUTPOST_ADMIN_TOKEN" https://$HTTP/api/v1/devices/demo-gw/log
  mosquitto_sub -V 5 -h 127.0.0.1 -p ${MQTT##*:} --cafile $OUTPOST_CA -i demo-gw -u demo-gw -P "\$(cat $D/demo-gw.token)" -t 'outpost/v1/d/demo-gw/in/#' -v

Ctrl-C stops the demo.
EOT
if [ -n "${OUTPOST_DEMO_SECONDS:-}" ]; then sleep "$OUTPOST_DEMO_SECONDS"; else wait "${pids[0]}"; fi
