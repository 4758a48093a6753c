#!/usr/bin/env bash
# HTTP load on loopback: `/v1/evaluate` beside a bare JSON echo route (examples/echo_server.rs,
# the same axum + tokio + mimalloc stack), measured in the same run on the same machine.
#
#   benches/load.sh                       # every backend; open loop at 10,000 requests/s
#                                         # (Redis at 5,000, REDIS_RATE)
#   RATE=20000 DURATION=30s benches/load.sh
#   BACKENDS=embedded benches/load.sh     # the RISKGATE_STATE_BACKENDs to measure
#
#   LOGINS=single benches/load.sh         # every request the same login
#   ROUNDS=5 benches/load.sh              # every cell five times, interleaved; medians at the end
#
# For each server: the closed-loop maximum (CONNS connections as fast as they go), then an
# open loop at RATE requests/s reporting p50/p99/p99.9. Installs the load generator `oha`
# with cargo when it is missing. LOGINS=mixed (the default) draws each request at random from
# 100,000 logins of 20,000 users (mostly from their home address or another in its /16, on
# one or two devices, 4% wrong passwords, a few spraying IPs); LOGINS=single sends one login
# (one user, one IP) every time, the worst case for per-key locks, where every answer parks a
# step-up. The echo route gets the same bodies. Servers run one at a time
# under load, but all stay up, so each is measured on the same machine state. The redis
# backend runs on a redis-server of its own, started here on a free port. Each cell starts
# once the servers are idle (settle): the embedded backend's database keeps flushing and
# compacting for a while after its turn, which would otherwise land on the next cells.
# On a shared machine one run of a cell says little (p99 swings several-fold from minute to
# minute): with ROUNDS=n every cell runs n times, the rounds interleaved, so each backend meets
# the same moments of the host, and the medians per cell are printed last.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-10000}
DURATION=${DURATION:-20s}
CONNS=${CONNS:-32}
REDIS_RATE=${REDIS_RATE:-5000}
BACKENDS=${BACKENDS:-memory redis embedded}
LOGINS=${LOGINS:-mixed}
ROUNDS=${ROUNDS:-1}

if ! command -v oha >/dev/null 2>&1; then
  echo "== installing oha (load generator)"
  cargo install oha --locked
fi
command -v python3 >/dev/null || { echo "error: python3 is needed to read oha's JSON" >&2; exit 1; }

echo "== building (release)"
cargo build --release --quiet --bin riskgate --example echo_server

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "error: nothing listens on port $1" >&2
  return 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/riskgate-load.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo_port=$(free_port)
target/release/examples/echo_server "127.0.0.1:$echo_port" &
pids+=($!)
wait_port "$echo_port"
# One riskgate per backend, each on its own port and scratch data directory; run from the
# repository, so GeoIP files fetched into geoip/ are used.
declare -A ports
redis_port=$(free_port)
if [[ " $BACKENDS " == *" redis "* ]]; then
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$work" --logfile "" >/dev/null &
  pids+=($!)
  wait_port "$redis_port"
fi
for backend in $BACKENDS; do
  port=$(free_port)
  RISKGATE_LISTEN="127.0.0.1:$port" RISKGATE_STATE_BACKEND="$backend" \
    RISKGATE_DATA_DIR="$work/data-$backend" RISKGATE_REDIS_URL="redis://127.0.0.1:$redis_port" \
    RISKGATE_LOG=warn target/release/riskgate serve &
  pids+=($!)
  wait_port "$port"
  ports[$backend]=$port
done

bodies="$work/logins.jsonl"
python3 - "$LOGINS" "$bodies" <<'PY'
import json, random, sys
mode, path = sys.argv[1], sys.argv[2]
agents = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
]
def login(user, ip, device, agent, ok):
    body = {"user_id": user, "ip": ip, "password_ok": ok, "user_agent": agent}
    if device:
        body["device_id"] = device
    return json.dumps(body, separators=(",", ":"))
with open(path, "w") as out:
    if mode == "single":
        out.write(login("load-user", "81.2.69.142", "laptop-1", agents[0], True) + "\n")
        sys.exit()
    rng = random.Random(7)
    users = 20_000
    homes = [(rng.randrange(1, 224), rng.randrange(256), rng.randrange(256)) for _ in range(users)]
    sprayers = [f"45.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(5)]
    for _ in range(100_000):
        n = rng.randrange(users)
        a, b, c = homes[n]
        where = rng.random()
        if where < 0.01:
            out.write(login(f"user-{n}", rng.choice(sprayers), None, agents[0], False) + "\n")
            continue
        if where < 0.70:
            ip = f"{a}.{b}.{c}.{1 + n % 250}"
        elif where < 0.92:
            ip = f"{a}.{b}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        else:
            ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        device = rng.choice([f"dev-{n}"] * 8 + [f"dev-{n}-2", None])
        out.write(login(f"user-{n}", ip, device, agents[n % len(agents)], rng.random() >= 0.04) + "\n")
PY

# run NAME URL [oha options...]: prints one line of figures.
run() {
  local name=$1 url=$2
  shift 2
  settle
  oha --no-tui --output-format json -m POST -H 'content-type: application/json' -Z "$bodies" \
    "$@" "$url" >"$work/out.json"
  python3 - "$name" "$work/out.json" "$work/cells.tsv" <<'PY'
import json, sys
name, path, cells = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ms = lambda v: f"{v * 1000:7.3f}"
print(f"{name:<28} {s['requestsPerSec']:>10.0f} req/s   p50 {ms(p['p50'])} ms   "
      f"p99 {ms(p['p99'])} ms   p99.9 {ms(p['p99.9'])} ms   status {codes}")
with open(cells, "a") as out:
    out.write(f"{name}\t{s['requestsPerSec']}\t{p['p50']}\t{p['p99']}\t{p['p99.9']}\n")
PY
}

# Waits (at most a minute) until the servers are idle, under 5% of a core over a second, so
# no cell pays for background work an earlier one left: the embedded backend's database goes
# on flushing and compacting for a while after a closed loop.
settle() {
  python3 - "${pids[@]}" <<'PY'
import os, sys, time
pids = sys.argv[1:]
def ticks():
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total
hz = os.sysconf("SC_CLK_TCK")
deadline, last = time.time() + 60, ticks()
while time.time() < deadline:
    time.sleep(1)
    now = ticks()
    if (now - last) / hz < 0.05:
        break
    last = now
PY
}

warm() { oha --no-tui -n 2000 -c 8 -m POST -H 'content-type: application/json' -Z "$bodies" "$1" >/dev/null; }
warm "http://127.0.0.1:$echo_port/echo"
for backend in $BACKENDS; do warm "http://127.0.0.1:${ports[$backend]}/v1/evaluate"; done

for round in $(seq "$ROUNDS"); do
  [[ $ROUNDS -gt 1 ]] && echo "== round $round of $ROUNDS"
  echo "== $LOGINS logins; closed loop, $CONNS connections, $DURATION"
  run "echo (max)" "http://127.0.0.1:$echo_port/echo" -c "$CONNS" -z "$DURATION"
  for backend in $BACKENDS; do
    run "evaluate $backend (max)" "http://127.0.0.1:${ports[$backend]}/v1/evaluate" -c "$CONNS" -z "$DURATION"
  done
  echo "== open loop, $RATE requests/s (redis: $REDIS_RATE), $DURATION"
  run "echo @ $RATE/s" "http://127.0.0.1:$echo_port/echo" -c "$CONNS" -q "$RATE" --latency-correction -z "$DURATION"
  for backend in $BACKENDS; do
    rate=$RATE
    [[ $backend == redis ]] && rate=$REDIS_RATE
    run "evaluate $backend @ $rate/s" "http://127.0.0.1:${ports[$backend]}/v1/evaluate" \
      -c "$CONNS" -q "$rate" --latency-correction -z "$DURATION"
  done
done

if [[ $ROUNDS -gt 1 ]]; then
  echo "== medians over $ROUNDS rounds (closed loops also as a share of memory's, round by round)"
  python3 - "$work/cells.tsv" <<'PY'
import statistics, sys
from collections import defaultdict
cells = defaultdict(list)
for line in open(sys.argv[1]):
    name, rps, p50, p99, p999 = line.rstrip("\n").split("\t")
    cells[name].append((float(rps), float(p50), float(p99), float(p999)))
memory = [rps for rps, *_ in cells.get("evaluate memory (max)", [])]
for name, runs in cells.items():
    med = lambda i: statistics.median(run[i] for run in runs)
    line = (f"{name:<28} {med(0):>10.0f} req/s   p50 {med(1) * 1000:7.3f} ms   "
            f"p99 {med(2) * 1000:7.3f} ms   p99.9 {med(3) * 1000:7.3f} ms")
    if name.endswith("(max)") and memory and len(memory) == len(runs):
        share = statistics.median(run[0] / base for run, base in zip(runs, memory))
        line += f"   {share:5.0%} of memory"
    print(line)
PY
fi
