#!/usr/bin/env bash
# Hub vs Mosquitto benchmark: runs `outpost-bench all` (cmd/outpost-bench,
# load generator in internal/loadgen), prints the markdown tables and writes
# them into docs/benchmarks.md between the outpost-bench markers (the rest
# of that file is left alone). `make bench` builds bin/ first; run directly,
# this builds what is missing. Arguments go to outpost-bench, e.g.
#   scripts/bench.sh --duration 3s --reps 1 --n 1000     # a quick look
# Exits non-zero when a run failed (lost messages, a broker died); the
# tables are written either way, with FAILED where a number would be.
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 TLS connections need as many descriptors in the generator and in
# the broker (children inherit the limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10240 ]; then
  echo "bench: open-file limit is $(ulimit -n); the 10,000-connection run needs ≥ 10240" >&2
fi

export CGO_ENABLED=0
[ -x bin/outpost-hub ] || go build -trimpath -o bin/ ./cmd/outpost-hub
go build -trimpath -o bin/outpost-bench ./cmd/outpost-bench

out=$(mktemp)
trap 'rm -f "$out" "$out.doc"' EXIT
status=0
bin/outpost-bench all --md "$out" "$@" || status=$?

doc=docs/benchmarks.md
begin='<!-- outpost-bench:begin -->'
end='<!-- outpost-bench:end -->'
if [ -s "$out" ]; then
  if [ -f "$doc" ] && grep -qF "$begin" "$doc" && grep -qF "$end" "$doc"; then
    awk -v f="$out" -v b="$begin" -v e="$end" '
      $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
      $0 == e { skip = 0 }
      !skip   { print }' "$doc" > "$out.doc"
    cat "$out.doc" > "$doc"
  else
    { [ -f "$doc" ] || echo "# Benchmarks"; echo; echo "$begin"; cat "$out"; echo "$end"; } >> "$doc"
  fi
  echo "bench: results written to $doc" >&2
fi
exit "$status"
