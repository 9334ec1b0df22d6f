#!/usr/bin/env bash
# `make bench`: load-tests a DB-Forge gateway and its baselines in one run and
# writes bench-results/ (results.json, results.md, profiles, logs).
#
# Starts, on free loopback ports: a release gateway in its own namespace
# (DBFORGE_NAMESPACE=bench<RUN>, every Docker object it makes labelled
# dbforge.test-run=bench-<RUN>), the in-process baseline server, and Datasette
# (from PyPI, in target/bench-venv). Runs `dbforge-bench suite`, then a `perf`
# profile of point reads at 64 connections on the gateway and the baseline.
# On exit, whatever happened: every database the suite spawned is deleted
# through the gateway, the processes started here are stopped (by pid), the
# labelled Docker objects are swept, and the scratch directory is removed.
#
# Environment (all optional):
#   BENCH_DURATION=10 BENCH_WARMUP=2   seconds per load run (measured, warm-up)
#   BENCH_CONNECTIONS=1,8,64           connection counts of HTTP targets
#   BENCH_SCENARIOS=point-read,insert,insert-100,mix-90-10
#   BENCH_COLD_SAMPLES=20 BENCH_TENANTS=200
#   BENCH_WITH_DATASETTE=1             0: no Datasette
#   BENCH_PROFILE=auto                 0: no perf profile; auto: if perf works
#   BENCH_PROFILE_DURATION=10          seconds of each profiled window
#   BENCH_TIMEOUT=1500                 hard limit on the suite, seconds
#   BENCH_OUT=bench-results            output directory
#   WORKER_IMAGE=db-worker-base:latest image of the database containers
set -uo pipefail
cd "$(dirname "$0")/.."

RUN=${BENCH_RUN_ID:-$(printf '%x' $(( $(date +%s) % 16777216 )))}
OUT=${BENCH_OUT:-bench-results}
WORKER_IMAGE=${WORKER_IMAGE:-db-worker-base:latest}
WITH_DATASETTE=${BENCH_WITH_DATASETTE:-1}
PROFILE=${BENCH_PROFILE:-auto}
PROFILE_DURATION=${BENCH_PROFILE_DURATION:-10}
SUITE_TIMEOUT=${BENCH_TIMEOUT:-1500}
export BENCH_DURATION=${BENCH_DURATION:-10} BENCH_WARMUP=${BENCH_WARMUP:-2}
B=target/release
VENV=target/bench-venv

mkdir -p "$OUT/logs"
work=$(mktemp -d "${TMPDIR:-/tmp}/dbforge-bench-$RUN.XXXXXX")
ledger="$work/ledger.tsv"
pids=()
gw_url=""

log() { printf '== %s\n' "$*"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    log "clean-up (run $RUN)"
    # Databases first, through the gateway, while it still runs.
    if [ -n "$gw_url" ] && [ -f "$ledger" ]; then
        cut -f1,2 "$ledger" | sort -u | while IFS=$'\t' read -r url name; do
            [ "$url" = "$gw_url" ] || continue
            curl -s -m 30 -o /dev/null -X DELETE "$url/admin/databases/$name" || true
        done
    fi
    # Then the processes started here, by pid: SIGTERM, a bounded wait, SIGKILL.
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    # Whatever is left in Docker under this run's label (containers, volumes).
    scripts/sweep.sh "bench-$RUN"
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (bounded) until URL answers 2xx.
wait_http() {
    for _ in $(seq 1 150); do
        curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "no answer from $1" >&2
    return 1
}

log "machine: $(nproc) CPUs, $(free -h | awk '/^Mem:/{print $2}') memory, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"

log "build (release)"
cargo build --release --locked -p dbforge-benches -p dbforge-gateway || exit 1
docker image inspect "$WORKER_IMAGE" >/dev/null 2>&1 || { echo "no image $WORKER_IMAGE: run make worker-image" >&2; exit 1; }

log "items database (100 000 rows)"
$B/dbforge-bench make-db --path "$work/items.sqlite3" || exit 1

log "gateway"
gw_port=$($B/dbforge-bench free-port)
DBFORGE_LISTEN=127.0.0.1:$gw_port DBFORGE_NAMESPACE="bench$RUN" \
    DBFORGE_LABELS="dbforge.test-run=bench-$RUN" DBFORGE_WORKER_IMAGE="$WORKER_IMAGE" \
    $B/dbforge-gateway >"$OUT/logs/gateway.log" 2>&1 &
gw_pid=$!
pids+=("$gw_pid")
gw_url="http://127.0.0.1:$gw_port"
wait_http "$gw_url/health" || exit 1

log "baseline server"
bl_port=$($B/dbforge-bench free-port)
$B/baseline-server --listen "127.0.0.1:$bl_port" --data-dir "$work/baseline" >"$OUT/logs/baseline.log" 2>&1 &
pids+=("$!")
bl_url="http://127.0.0.1:$bl_port"
wait_http "$bl_url/health" || exit 1

ds_args=()
if [ "$WITH_DATASETTE" != 0 ]; then
    log "datasette"
    if [ ! -x "$VENV/bin/datasette" ]; then
        { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q datasette; } >"$OUT/logs/datasette-install.log" 2>&1
    fi
    if [ -x "$VENV/bin/datasette" ]; then
        mkdir -p "$work/datasette"
        cp "$work/items.sqlite3" "$work/datasette/items.sqlite3"
        ds_port=$($B/dbforge-bench free-port)
        "$VENV/bin/python" benches/datasette/serve.py "$work/datasette/items.sqlite3" "$ds_port" \
            >"$OUT/logs/datasette.log" 2>&1 &
        pids+=("$!")
        if wait_http "http://127.0.0.1:$ds_port/items.json?sql=select+1"; then
            ds_args=(--datasette "http://127.0.0.1:$ds_port" --datasette-db items)
            echo "datasette $("$VENV/bin/datasette" --version)"
        fi
    else
        echo "datasette could not be installed: see $OUT/logs/datasette-install.log"
    fi
fi

log "suite (run $RUN: ${BENCH_DURATION}s per load run after ${BENCH_WARMUP}s warm-up)"
timeout -k 10 "$SUITE_TIMEOUT" $B/dbforge-bench suite \
    --run-id "$RUN" --out "$OUT" --ledger "$ledger" --scratch "$work/scratch" \
    --gateway "$gw_url" --gateway-pid "$gw_pid" --baseline "$bl_url" "${ds_args[@]}" \
    --worker-image "$WORKER_IMAGE" --db-file "$work/items.sqlite3"
suite_status=$?

if [ "$PROFILE" = auto ]; then
    if command -v perf >/dev/null && perf record -q -a -F 99 -o "$work/probe.data" -- true >/dev/null 2>&1; then
        PROFILE=1
    else
        PROFILE=0
        echo "perf cannot record here: no profile"
    fi
fi
if [ "$PROFILE" = 1 ]; then
    for target in gateway baseline; do
        url=$gw_url
        [ "$target" = baseline ] && url=$bl_url
        log "perf profile: $target, point reads at 64 connections, ${PROFILE_DURATION}s"
        timeout -k 10 300 $B/dbforge-bench load --url "$url" --scenario point-read --setup \
            --db "bench-$RUN-prof" --connections 64 --warmup 2 --duration "$PROFILE_DURATION" \
            --label "$target" --perf "$work/perf-$target.data" --json "$OUT/profile-$target-run.json"
        data="$work/perf-$target.data.64"
        [ -f "$data" ] || continue
        perf report -i "$data" --stdio --no-children --sort comm --percent-limit 0.5 \
            >"$OUT/profile-$target-by-command.txt" 2>/dev/null
        perf report -i "$data" --stdio --no-children --sort comm,dso --percent-limit 0.5 \
            >"$OUT/profile-$target-by-dso.txt" 2>/dev/null
        perf report -i "$data" --stdio --no-children --sort comm,dso,sym --percent-limit 0.2 \
            >"$OUT/profile-$target-by-symbol.txt" 2>/dev/null
    done
fi

log "results: $OUT/results.md, $OUT/results.json (bench.sh took ${SECONDS}s)"
exit "$suite_status"
