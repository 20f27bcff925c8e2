#!/usr/bin/env bash
# Benchmarks of `weft serve` (issue 3), run by hand from anywhere in the repository:
#   bench/server_bench.sh            (BUILD=dir to use another build folder; N=prompts per series)
# Builds the Release binary (make build), starts it on an ephemeral port with a temporary base
# dir and prints: GET /system_stats requests/s (wrk -t2 -c64 -d10s), POST /prompt ->
# execution_success latency over N fully cached prompts (the invert workflow and a 500-node
# chain), idle RSS after start, and the time from exec to the first answered request.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${N:-1000}
WRK_SECONDS=${WRK_SECONDS:-10}

build_log=$(mktemp "${TMPDIR:-/tmp}/weft-bench-build-XXXXXX.log")
if ! make --no-print-directory build BUILD="$BUILD" >"$build_log" 2>&1; then
  cat "$build_log" >&2
  exit 1
fi
rm -f "$build_log"
BIN=$BUILD/weft
command -v wrk >/dev/null || { echo "server_bench: wrk is missing (scripts/bootstrap installs it)" >&2; exit 1; }
if [ ! -d tests/e2e/node_modules/ws ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --silent)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-bench-XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# (4) exec -> first answered request, and idle RSS, over fresh starts.
eval "$(node bench/startup.mjs "$BIN" 5)"

# The server under test, on an ephemeral port.
"$BIN" serve --port 0 --base-dir "$tmp/base" --quiet >"$tmp/out" 2>"$tmp/err" &
pid=$!
url=
for _ in $(seq 1 200); do
  url=$(sed -n 's/^weft: listening on \(http:\/\/[^ ]*\).*/\1/p' "$tmp/out")
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/err" >&2; exit 1; }
  sleep 0.05
done
[ -n "$url" ] || { echo "server_bench: weft serve did not start" >&2; cat "$tmp/err" >&2; exit 1; }
sleep 0.5
# (3) idle RSS of this instance, before any request.
rss_idle_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")

# (1) requests/s.
wrk_out=$(wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency "$url/system_stats")
rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$wrk_out")
wrk_p50=$(awk '$1 == "50%" {print $2}' <<<"$wrk_out")
wrk_errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$wrk_out")

# (2) prompt latency.
eval "$(node bench/prompt_latency.mjs "$url" "$N")"
rss_after_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")

mb() { awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1024}'; }
verdict() { if awk "BEGIN {exit !($1)}"; then echo ok; else echo MISSED; fi; }

echo
echo "weft serve benchmarks ($(nproc) cores, $BIN, $(git rev-parse --short HEAD 2>/dev/null || echo 'no commit'))"
printf '%-44s %-26s %-12s %s\n' "metric" "value" "target" ""
printf '%-44s %-26s %-12s %s\n' "GET /system_stats, wrk -t2 -c64 -d${WRK_SECONDS}s" "$rps req/s (p50 $wrk_p50)" ">= 20000" "$(verdict "$rps >= 20000")"
printf '%-44s %-26s %-12s %s\n' "cached invert prompt, p50 / p99 (n=$invert_n)" "$invert_p50_ms / $invert_p99_ms ms" "p50 < 1 ms" "$(verdict "$invert_p50_ms < 1")"
printf '%-44s %-26s %-12s %s\n' "500-node chain, first (uncached) run" "$chain500_first_ms ms" "" ""
printf '%-44s %-26s %-12s %s\n' "500-node chain cached, p50 / p99 (n=$chain500_n)" "$chain500_p50_ms / $chain500_p99_ms ms" "" ""
printf '%-44s %-26s %-12s %s\n' "idle RSS after start (this run)" "$(mb "$rss_idle_kb")" "< 40 MB" "$(verdict "$rss_idle_kb < 40960")"
printf '%-44s %-26s %-12s %s\n' "idle RSS, median of 5 fresh starts" "$(mb "$rss_kb")" "< 40 MB" "$(verdict "$rss_kb < 40960")"
printf '%-44s %-26s %-12s %s\n' "RSS after the benchmarks" "$(mb "$rss_after_kb")" "" ""
printf '%-44s %-26s %-12s %s\n' "exec -> first answered request (median/min)" "$ready_ms / $ready_min_ms ms" "< 100 ms" "$(verdict "$ready_ms < 100")"
[ -z "$wrk_errors" ] || echo "wrk: $wrk_errors"
