#!/bin/bash
# The RESP example's coroutine server beside its tokio server, under
# redis-benchmark (apt-get install redis-tools) on loopback.
#
#   scripts/resp-bench.sh throughput [REQUESTS] [REPS]   # -> resp-throughput.csv
#   scripts/resp-bench.sh syscalls [REQUESTS]            # -> strace-SERVER-DEPTH.txt
#
# throughput: 50 connections, pipeline depth 1 and 16, REPS repetitions with
# the two servers interleaved; each CSV row is rep,depth,server,<redis-benchmark --csv row>.
# syscalls: the server under `strace -c -f` for REQUESTS SETs at depth 1 and 16,
# and once with no requests (its start-up and shut-down, to subtract).
# Build first: cargo build --release -p coprimitives --example resp
set -eu
BIN=${BIN:-target/release/examples/resp}
OUT=${OUT:-.}
TESTS=ping,set,get,incr,lpush,lpop
mode=${1:-throughput}

start_server() { # SERVER PORT [PREFIX...]
  local srv=$1 port=$2; shift 2
  "$@" "$BIN" --server "$srv" --port "$port" --threads 2 2>/dev/null &
  SERVER_PID=$!
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return
    sleep 0.1
  done
}

case $mode in
throughput)
  n=${2:-200000}; reps=${3:-3}; csv=$OUT/resp-throughput.csv; : >"$csv"
  for rep in $(seq "$reps"); do
    for depth in 1 16; do
      for srv in co tokio; do
        port=$((7000 + RANDOM % 1000))
        start_server "$srv" "$port"
        redis-benchmark -p "$port" -c 50 -n "$n" -P "$depth" -t "$TESTS" --csv 2>/dev/null |
          tail -n +2 | sed "s/^/$rep,$depth,$srv,/" >>"$csv"
        kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
      done
    done
  done
  ;;
syscalls)
  n=${2:-50000}
  for srv in co tokio; do
    for depth in base 1 16; do
      port=$((8000 + RANDOM % 1000))
      start_server "$srv" "$port" strace -c -f -o "$OUT/strace-$srv-$depth.txt"
      if [ "$depth" != base ]; then
        redis-benchmark -p "$port" -c 50 -n "$n" -P "$depth" -t set -q >/dev/null 2>&1
      fi
      kill -TERM "$(pgrep -P "$SERVER_PID")"; wait "$SERVER_PID" 2>/dev/null || true
    done
  done
  ;;
*) echo "usage: $0 throughput|syscalls ..." >&2; exit 2 ;;
esac
