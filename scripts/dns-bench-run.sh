#!/bin/bash
# Measurement for docs/benchmarks.md: queries per second for a hot slug, registry-svc's DNS
# interface beside NSD answering a static zone with the same records, on the same machine
# with the same dnsperf run, interleaved (ours, NSD, ours, NSD, ...) as the machine is
# shared. Needs dnsperf and nsd (Debian: apt-get install dnsperf nsd). Run from the
# repository root after `cargo build --release --bin registry-svc`.
#
#   ROUNDS=3 SECONDS_EACH=10 INSTANCES=10 SLUGS=1000 scripts/dns-bench-run.sh
set -eu
BIN=${BIN:-./target/release/registry-svc}
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-10}
INSTANCES=${INSTANCES:-10}     # healthy instances of the hot slug (one A record each)
SLUGS=${SLUGS:-1000}           # other slugs, one instance each: the rest of the zone
CLIENTS=${CLIENTS:-4}          # dnsperf clients (sockets)
OUTSTANDING=${OUTSTANDING:-100}
NSD_SERVERS=${NSD_SERVERS:-$(nproc)}
DATA=$(mktemp -d)
OURS_PORT=${OURS_PORT:-18600}
NSD_PORT=${NSD_PORT:-18601}
DPID=; NPID=
trap 'kill $DPID $NPID 2>/dev/null; wait 2>/dev/null; rm -rf $DATA' EXIT

# Our daemon, with the instances: a TTL, and one heartbeat each, makes them Healthy.
$BIN serve --listen 127.0.0.1:0 --data-dir $DATA/registry --nvidia-smi $DATA/none \
  --dns-listen 127.0.0.1:$OURS_PORT > $DATA/out 2> $DATA/err &
DPID=$!
for i in $(seq 100); do grep -qs DNS $DATA/out && break; sleep 0.2; done
PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' $DATA/out | head -1)
python3 - "$PORT" "$(cat $DATA/registry/admin.token)" "$INSTANCES" "$SLUGS" > $DATA/registry.zone <<'PY'
import sys, http.client, json
port, token, instances, slugs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port)
auth = {"authorization": "Bearer " + token, "x-registry-extensions": "true"}
def register(ip, slug):
    c.request("PUT", "/registry-svc/instance", json.dumps(
        {"url": f"http://{ip}:8080", "slug": slug, "ttl": "1h"}), auth)
    r = c.getresponse(); body = json.loads(r.read()); assert r.status == 201, body
    c.request("PUT", f"/registry-svc/instance/{body['id']}/heartbeat", "", auth)
    r = c.getresponse(); r.read(); assert r.status == 204, r.status
# The same records as a static zone for NSD.
print("$ORIGIN registry.\n$TTL 1")
print("@ SOA ns hostmaster 1 3600 600 86400 1\n@ NS ns\nns A 127.0.0.1")
def records(ip, slug):
    label = "".join(f"{int(b):02x}" for b in ip.split("."))
    print(f"{slug}.service A {ip}")
    print(f"_{slug}._tcp.service SRV 1 1 8080 {label}.addr")
    print(f"{label}.addr A {ip}")
for i in range(instances):
    ip = f"127.0.2.{i + 1}"
    register(ip, "hot"); records(ip, "hot")
for i in range(slugs):
    ip = f"127.1.{i // 250}.{i % 250 + 1}"
    register(ip, f"svc-{i}"); records(ip, f"svc-{i}")
PY
echo "registered $INSTANCES instances of 'hot' and $SLUGS other slugs"

# NSD on the same records.
mkdir -p $DATA/nsd
cat > $DATA/nsd/nsd.conf <<EOF
server:
  ip-address: 127.0.0.1@$NSD_PORT
  server-count: $NSD_SERVERS
  reuseport: yes
  username: ""
  zonesdir: "$DATA"
  database: ""
  zonelistfile: "$DATA/nsd/zone.list"
  xfrdfile: "$DATA/nsd/xfrd.state"
  xfrdir: "$DATA/nsd"
  pidfile: "$DATA/nsd/nsd.pid"
  logfile: "$DATA/nsd/log"
  hide-version: yes
  # NSD's response rate limiting (on by default in Debian's build) would throttle
  # dnsperf's one source to a few hundred answers a second; ours is off at its default.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: registry.
  zonefile: "$DATA/registry.zone"
EOF
nsd-checkzone registry. $DATA/registry.zone
nsd -d -c $DATA/nsd/nsd.conf &
NPID=$!
for i in $(seq 50); do dig +short -p $NSD_PORT @127.0.0.1 hot.service.registry. A | grep -q . && break; sleep 0.2; done

echo "ours: $(dig +short -p $OURS_PORT @127.0.0.1 hot.service.registry. A | wc -l) A records; NSD: $(dig +short -p $NSD_PORT @127.0.0.1 hot.service.registry. A | wc -l)"
for qtype in A SRV; do
  name=hot.service.registry.
  [ $qtype = SRV ] && name=_hot._tcp.service.registry.
  echo "$name $qtype" > $DATA/queries
  for round in $(seq $ROUNDS); do
    for server in ours nsd; do
      port=$OURS_PORT; [ $server = nsd ] && port=$NSD_PORT
      qps=$(dnsperf -s 127.0.0.1 -p $port -d $DATA/queries -l $SECONDS_EACH -c $CLIENTS \
        -q $OUTSTANDING -e 2>&1 | tee $DATA/last | sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p')
      lost=$(sed -n 's/.*Queries lost: *\([0-9]*\).*/\1/p' $DATA/last)
      echo "$qtype round $round $server: $qps qps (lost $lost)"
    done
  done
done
