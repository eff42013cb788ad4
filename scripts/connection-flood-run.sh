#!/bin/bash
# Measurement for docs/benchmarks.md: a daemon, 2 x 10,000 hostile connections that reopen when cut, a legitimate probe meanwhile. Run from the repository root.
set -u
BIN=${BIN:-./target/release/registry-svc}
FLOOD=./scripts/connection-flood.py
DATA=$(mktemp -d)
$BIN serve --listen 127.0.0.1:0 --data-dir $DATA --nvidia-smi $DATA/none > $DATA/out 2> $DATA/err &
DPID=$!
for i in $(seq 50); do grep -q listening $DATA/out && break; sleep 0.2; done
PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' $DATA/out | head -1)
TOKEN=$(cat $DATA/admin.token)
echo "port $PORT"; grep -o 'max_connections=[0-9]*' $DATA/err
python3 - $PORT $TOKEN <<'PY'
import sys, http.client, json
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(200):
    c.request("PUT", "/registry-svc/instance", json.dumps({"url": f"http://127.0.0.1:{2000+i}", "slug": f"svc-{i%20}", "healthCheck": {"type": "none"}}), {"authorization": "Bearer " + sys.argv[2]})
    r = c.getresponse(); r.read(); assert r.status == 201, r.status
print("registered 200 instances")
PY
echo "--- baseline (no flood)"
python3 $FLOOD probe $PORT $TOKEN 5
python3 $FLOOD hold $PORT 10000 45 & H1=$!
python3 $FLOOD hold $PORT 10000 45 & H2=$!
sleep 15
echo "--- during the flood; daemon fds: $(ls /proc/$DPID/fd | wc -l)"
python3 $FLOOD probe $PORT $TOKEN 20
echo "daemon fds after probe: $(ls /proc/$DPID/fd | wc -l); RSS: $(grep VmRSS /proc/$DPID/status)"
wait $H1 $H2
kill -TERM $DPID; wait $DPID
rm -rf $DATA
