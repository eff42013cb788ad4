#!/bin/bash
# Measurement for docs/benchmarks.md: two daemon builds taking turns on the hot paths.
#
#   scripts/hot-paths-ab.sh BINARY_A BINARY_B [ROUNDS]
#
# Starts both (each in a throwaway data dir on 127.0.0.1), registers exactly 10,000
# instances in each (10 per slug), then runs wrk -t2 -c64 for 5 s on the discovery read
# (GET /registry-svc/instances?slug=wrk-7) of A and of B in turn, ROUNDS times (default 8;
# every other round B goes first), then ROUNDS/2 rounds of 5 s of new registrations on
# each. Prints req/s per run; compare the sums, the machine drifts between rounds. Needs wrk
# and registry-bench (BENCH, default target/release/registry-bench).
set -u
A=$1; B=$2; ROUNDS=${3:-8}
DIR=$(mktemp -d)
trap 'kill $(cat $DIR/a/pid $DIR/b/pid 2>/dev/null) 2>/dev/null; wait; rm -rf $DIR' EXIT
# The registration load registry-bench's compare uses: a new 127.x address per request,
# slug wrk-(n % SLUGS), from address block FIRST, the same address again past CAP.
BENCH=${BENCH:-$(dirname "$0")/../target/release/registry-bench}
register_script() { # FIRST SLUGS CAP
  "$BENCH" register-script --first "$1" --slugs "$2" --cap "$3"
}
start() { # NAME BINARY
  mkdir -p $DIR/$1
  $2 serve --listen 127.0.0.1:0 --data-dir $DIR/$1 --nvidia-smi $DIR/none > $DIR/$1/out 2> $DIR/$1/err &
  echo $! > $DIR/$1/pid
  for i in $(seq 100); do [ -s $DIR/$1/admin.token ] && grep -q listening $DIR/$1/out && break; sleep 0.1; done
}
start a $A; start b $B
PA=$(grep -o '[0-9]*$' $DIR/a/out); PB=$(grep -o '[0-9]*$' $DIR/b/out)
TA=$(cat $DIR/a/admin.token); TB=$(cat $DIR/b/admin.token)
# 5,000 per wrk thread, then the same registration again (an upsert): exactly 10,000.
register_script 100 1000 5000 > $DIR/load.lua
BENCH_TOKEN=$TA wrk -t2 -c64 -d3s -s $DIR/load.lua http://127.0.0.1:$PA > /dev/null
BENCH_TOKEN=$TB wrk -t2 -c64 -d3s -s $DIR/load.lua http://127.0.0.1:$PB > /dev/null
count() { curl -s -H "Authorization: Bearer $2" "http://127.0.0.1:$1/registry-svc/instances?slug=wrk-7" | grep -o '"id"' | wc -l; }
echo "slug wrk-7 holds: a $(count $PA $TA), b $(count $PB $TB) instances"
read_rate() { wrk -t2 -c64 -d5s -H "Authorization: Bearer $2" "http://127.0.0.1:$1/registry-svc/instances?slug=wrk-7" | awk '/Requests\/sec/ {print $2}'; }
register_rate() { # PORT TOKEN FIRST
  register_script $3 10000 1000000000 > $DIR/new.lua
  BENCH_TOKEN=$2 wrk -t2 -c64 -d5s -s $DIR/new.lua http://127.0.0.1:$1 | awk '/Requests\/sec/ {print $2}'
}
for r in $(seq $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then
    ra=$(read_rate $PA $TA); rb=$(read_rate $PB $TB)
  else
    rb=$(read_rate $PB $TB); ra=$(read_rate $PA $TA)
  fi
  echo "read round $r: a $ra b $rb"
done
for r in $(seq $((ROUNDS / 2))); do
  echo "registration round $r: a $(register_rate $PA $TA $((110 + r))) b $(register_rate $PB $TB $((110 + r)))"
done
