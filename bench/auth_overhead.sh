#!/usr/bin/env bash
# Steady-state cost of authentication (issue 4), run by hand from anywhere in the repository:
#   bench/auth_overhead.sh
# Knobs (environment): BUILD (build folder, default build), ROUNDS (alternating rounds of the
# load runs, 3), WRK_SECONDS (10), CONNS (32), BURSTS (rounds of the burst runs, 12), BURST_N
# (requests per burst, 90), PACE_MS (60), PACE_SECONDS (20), SERVE_ARGS (extra `weft serve`
# flags for both servers, e.g. a higher rate limit once the server has one).
#
# Builds the Release binary (make build) and starts two servers on ephemeral ports with
# temporary base dirs: one with authentication, one with --no-auth. Both get the same request,
# GET /system_stats carrying the same "Authorization: Bearer <key of a role-user account>", so
# request sizes match and the only difference is the work done with the header: the gate, the
# verified-key cache (argon2 runs once, on the warm-up request), the rate-limit buckets. Runs
# alternate between the two servers so drift on a shared machine hits both alike.
#
# The server refills each API key and each client address at 20 requests/s with a burst of
# 100 (auth/limits.c), so a wrk run at full speed gets 429s after 100 requests. Hence:
#  (e) burst, the headline figure: one connection, BURST_N back-to-back requests (within the
#      burst, so every answer is a 200), then a pause that refills the buckets. Warm caches,
#      no queueing: the difference is what authentication adds to a request, CPU and all.
#      Per round, median latency of the auth burst minus that of the no-auth burst run right
#      after it; the figure is the median of those differences (robust against a shared
#      machine's drift and against the rare argon2 re-verification). (e2) compares the mean
#      latencies instead, so it includes that re-verification: the verified-key cache keeps
#      a key 60 s, then argon2 runs again on the loop thread (tens of ms, once per key).
#  (c) paced: one connection, PACE_MS between requests (about 16/s, under the refill rate):
#      mean latency; every request finds cold caches (the loop slept in between).
#  (d) the paced runs seen from the server: CPU time of its loop thread (its main thread,
#      /proc/PID/schedstat) per completed request.
#  (a) throughput at -c$CONNS (wrk -t2, WRK_SECONDS): added = (1/rps_auth - 1/rps_noauth) x 1e6,
#      the loop's time per request, and (b) mean latency at -c1 unpaced. Both are what the
#      target means once nothing is rate limited; with the default limits most answers are
#      429s and the script marks them INVALID (counted from wrk's non-2xx line).
# Target: under 20 µs added per request.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-3}
WRK_SECONDS=${WRK_SECONDS:-10}
CONNS=${CONNS:-32}
BURSTS=${BURSTS:-12}
BURST_N=${BURST_N:-90}
PACE_MS=${PACE_MS:-60}
PACE_SECONDS=${PACE_SECONDS:-20}
SERVE_ARGS=${SERVE_ARGS:-}

build_log=$(mktemp "${TMPDIR:-/tmp}/weft-bench-build-XXXXXX.log")
if ! make --no-print-directory build BUILD="$BUILD" >"$build_log" 2>&1; then
  cat "$build_log" >&2
  exit 1
fi
rm -f "$build_log"
BIN=$BUILD/weft
command -v wrk >/dev/null || { echo "auth_overhead: wrk is missing (scripts/bootstrap installs it)" >&2; exit 1; }
command -v curl >/dev/null || { echo "auth_overhead: curl is missing" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-authbench-XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# start NAME ARGS...: starts a server; sets url_NAME and pid_NAME.
start() {
  local name=$1
  shift
  # shellcheck disable=SC2086
  "$BIN" serve --port 0 --base-dir "$tmp/$name" --quiet $SERVE_ARGS "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local pid=$!
  pids+=("$pid")
  local url=
  for _ in $(seq 1 200); do
    url=$(sed -n 's/^weft: listening on \(http:\/\/[^ ]*\).*/\1/p' "$tmp/$name.out")
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "auth_overhead: $name server exited" >&2; cat "$tmp/$name.err" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$url" ] || { echo "auth_overhead: $name server did not start" >&2; cat "$tmp/$name.err" >&2; exit 1; }
  printf -v "url_$name" '%s' "$url"
  printf -v "pid_$name" '%s' "$pid"
}

start auth
start noauth --no-auth

# A role-"user" account and its key; the CLI prints the key once.
printf 'bench-password-%s\n' "$RANDOM$RANDOM" |
  "$BIN" users add bench --role user --password-stdin --base-dir "$tmp/auth" >/dev/null
key=$("$BIN" keys create --user bench --base-dir "$tmp/auth" 2>/dev/null | grep -o 'weft_[A-Za-z0-9]*_[A-Za-z0-9_-]*' | head -n1)
[ -n "$key" ] || { echo "auth_overhead: could not create a key" >&2; exit 1; }
hdr="Authorization: Bearer $key"

# Sanity, and the warm-up request that puts the key in the verified-key cache.
for name in auth noauth; do
  u=url_$name
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$hdr" "${!u}/system_stats")
  [ "$code" = 200 ] || { echo "auth_overhead: GET /system_stats on $name answered $code" >&2; exit 1; }
done
code=$(curl -s -o /dev/null -w '%{http_code}' "$url_auth/system_stats")
[ "$code" = 401 ] || { echo "auth_overhead: the auth server answered $code without a key" >&2; exit 1; }

printf 'function delay() return %d end\n' "$PACE_MS" >"$tmp/pace.lua"
cat >"$tmp/burst.lua" <<EOF
local n = 0
function response(status, headers, body)
  n = n + 1
  if n >= $BURST_N then wrk.thread:stop() end
end
EOF

# wrk output -> "rps mean_latency_us non2xx requests"
parse() {
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0
      if (v ~ /ms$/) return v * 1000
      if (v ~ /s$/) return v * 1000000
      return v + 0
    }
    /^ *Latency +[0-9]/ { lat = us($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    / requests in / { n = $1 }
    $1 == "50%" { p50 = us($2) }
    END { printf "%s %s %d %d %s\n", rps, lat, bad + 0, n + 0, p50 + 0 }'
}
run() { # run NAME THREADS CONNS SECONDS [wrk args...] -> parse's line
  local u=url_$1 t=$2 c=$3 d=$4
  shift 4
  wrk -t"$t" -c"$c" -d"${d}s" --latency -H "$hdr" "$@" "${!u}/system_stats" | parse
}
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat"; }
med() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
best_min() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | head -n1; }
best_max() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | tail -n1; }
diff_us() { awk -v a="$1" -v n="$2" 'BEGIN {printf "%.2f", a - n}'; }

declare -A series bad
add() { series[$1]+=" $2"; bad[$1]=$(( ${bad[$1]:-0} + $3 )); }

# (e) bursts within the token buckets. The two servers' bursts of one round run back to back,
# so the per-round difference of their medians cancels most of the machine's drift.
for r in $(seq 1 "$BURSTS"); do
  for name in auth noauth; do
    read -r _ lat nb n p50 < <(run "$name" 1 1 1 -s "$tmp/burst.lua")
    echo "burst $r $name: $n requests, mean latency $lat us, median $p50 us, non-2xx $nb" >&2
    add "burst_$name" "$lat" "$nb"
    add "burstp50_$name" "$p50" 0
    printf -v "p50_$name" '%s' "$p50"
  done
  add burst_pair "$(diff_us "$p50_auth" "$p50_noauth")" 0
  sleep 4 # 20 tokens/s: the buckets are full again
done

# (c)/(d) paced.
for r in $(seq 1 "$ROUNDS"); do
  for name in auth noauth; do
    pv=pid_$name
    c0=$(cpu_ns "${!pv}")
    read -r _ lat nb n _ < <(run "$name" 1 1 "$PACE_SECONDS" -s "$tmp/pace.lua")
    c1=$(cpu_ns "${!pv}")
    cpu=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN {printf "%.2f", (b - a) / 1000 / (n > 0 ? n : 1)}')
    echo "paced $r $name: $n requests, mean latency $lat us, loop CPU $cpu us/request, non-2xx $nb" >&2
    add "paced_$name" "$lat" "$nb"
    add "cpu_$name" "$cpu" 0
  done
done

# (a)/(b) full speed (valid only when nothing is rate limited).
for r in $(seq 1 "$ROUNDS"); do
  for name in auth noauth; do
    read -r rps lat nb n _ < <(run "$name" 2 "$CONNS" "$WRK_SECONDS")
    echo "load $r $name: $rps req/s, mean latency $lat us, non-2xx $nb of $n" >&2
    add "rps_$name" "$rps" "$nb"
    read -r rps lat nb n _ < <(run "$name" 1 1 "$(( (WRK_SECONDS + 1) / 2 ))")
    echo "c1 $r $name: $rps req/s, mean latency $lat us, non-2xx $nb of $n" >&2
    add "c1_$name" "$lat" "$nb"
  done
done

burst_a=$(med "${series[burst_auth]}"); burst_n=$(med "${series[burst_noauth]}")
burst_amin=$(best_min "${series[burst_auth]}"); burst_nmin=$(best_min "${series[burst_noauth]}")
pair=$(med "${series[burst_pair]}")
bp50_a=$(med "${series[burstp50_auth]}"); bp50_n=$(med "${series[burstp50_noauth]}")
paced_a=$(med "${series[paced_auth]}"); paced_n=$(med "${series[paced_noauth]}")
cpu_a=$(med "${series[cpu_auth]}"); cpu_n=$(med "${series[cpu_noauth]}")
rps_a=$(best_max "${series[rps_auth]}"); rps_n=$(best_max "${series[rps_noauth]}")
c1_a=$(med "${series[c1_auth]}"); c1_n=$(med "${series[c1_noauth]}")
added_tp=$(awk -v a="$rps_a" -v n="$rps_n" 'BEGIN {printf "%.2f", (1 / a - 1 / n) * 1e6}')

verdict() { # verdict EXPR NON2XX
  if [ "$2" -gt 0 ]; then echo "INVALID ($2 non-2xx)"; elif awk "BEGIN {exit !($1)}"; then echo ok; else echo MISSED; fi
}
row() { printf '%-50s %-34s %-9s %s\n' "$@"; }

echo
echo "weft serve: authentication overhead ($(nproc) cores, $BIN, $(git rev-parse --short HEAD 2>/dev/null || echo 'no commit'))"
echo "GET /system_stats, 'Authorization: Bearer <role-user key>' sent to both servers (auth vs --no-auth)"
row "metric" "added per request (auth / no-auth)" "target" ""
row "(e) -c1 bursts of $BURST_N: median latency, paired" "$pair us ($bp50_a / $bp50_n us)" "< 20 us" "$(verdict "$pair < 20" "$(( ${bad[burst_auth]} + ${bad[burst_noauth]} ))")"
d=$(diff_us "$burst_a" "$burst_n")
row "(e2) the same, mean latency (median of $BURSTS bursts)" "$d us ($burst_a / $burst_n us)" "" ""
d=$(diff_us "$burst_amin" "$burst_nmin")
row "(e3) the same, mean latency of the best burst" "$d us ($burst_amin / $burst_nmin us)" "" ""
d=$(diff_us "$paced_a" "$paced_n")
row "(c) -c1 paced ${PACE_MS} ms, median of $ROUNDS" "$d us ($paced_a / $paced_n us)" "" "$(verdict "1" "$(( ${bad[paced_auth]} + ${bad[paced_noauth]} ))")"
d=$(diff_us "$cpu_a" "$cpu_n")
row "(d) loop CPU per paced request" "$d us ($cpu_a / $cpu_n us)" "" ""
row "(a) -c$CONNS throughput, 1/rps_a - 1/rps_n" "$added_tp us ($rps_a / $rps_n req/s)" "< 20 us" "$(verdict "$added_tp < 20" "${bad[rps_auth]}")"
d=$(diff_us "$c1_a" "$c1_n")
row "(b) -c1 unpaced, median of $ROUNDS" "$d us ($c1_a / $c1_n us)" "< 20 us" "$(verdict "$d < 20" "${bad[c1_auth]}")"
if [ "$(( ${bad[rps_auth]} + ${bad[c1_auth]} ))" -gt 0 ]; then
  echo "(a) and (b): the per-key / per-address token buckets answered 429 to most requests, so" \
    "those runs measured refusals; (e) is the valid figure."
fi
