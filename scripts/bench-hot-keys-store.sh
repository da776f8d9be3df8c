#!/usr/bin/env bash
# One store throughput run for docs/perf-store.md ("Hot keys off vs raw"): starts 3 release
# nodes on 127.0.0.1:47001-47203 with --hot-keys=$1 (off|raw|hashed), runs redis-benchmark
# against node 2 (pipelined, then unpipelined), prints the rps lines and the nodes' CPU
# (utime+stime, 1/100 s) per workload, and stops the nodes. Alternate modes between runs:
#   cargo build --release && for m in off raw raw off off raw raw off; do scripts/bench-hot-keys-store.sh $m; done
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="${KEYVIZ_BIN:-$ROOT/target/release/keyviz}"; MODE=${1:?usage: $0 off|raw|hashed}
PEERS=1=127.0.0.1:47101/127.0.0.1:47001/127.0.0.1:47201,2=127.0.0.1:47102/127.0.0.1:47002/127.0.0.1:47202,3=127.0.0.1:47103/127.0.0.1:47003/127.0.0.1:47203
rm -rf /tmp/hkb; mkdir -p /tmp/hkb
pids=()
for i in 1 2 3; do
  KEYVIZ_CLUSTER_SECRET=0123456789abcdef0123456789abcdef KEYVIZ_ADMIN_USER=admin KEYVIZ_ADMIN_PASSWORD=pw \
  KEYVIZ_LOG=warn,openraft=off $B node --node-id $i --resp-addr 127.0.0.1:4700$i \
    --raft-addr 127.0.0.1:4710$i --admin-addr 127.0.0.1:4720$i --peer $PEERS \
    --data-dir /tmp/hkb/n$i --step 2s --fsync=false --hot-keys=$MODE > /tmp/hkb/n$i.log 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do for t in $(seq 1 100); do grep -q "ready" /tmp/hkb/n$i.log && break; sleep 0.2; done; done
sleep 2
cpu() { local s=0; for p in "${pids[@]}"; do read -r -a f < /proc/$p/stat; s=$((s + f[13] + f[14])); done; echo $s; }
c0=$(cpu)
P=$(redis-benchmark -p 47002 -t set,get -n 200000 -P 16 -r 100000 -q 2>/dev/null | tr '\r' '\n' | grep -E "^(SET|GET): [0-9]" | awk '{print $1,$2}' | tr '\n' ' ')
c1=$(cpu)
U=$(redis-benchmark -p 47002 -t set,get -n 50000 -P 1 -r 100000 -q 2>/dev/null | tr '\r' '\n' | grep -E "^(SET|GET): [0-9]" | awk '{print $1,$2}' | tr '\n' ' ')
c2=$(cpu)
echo "$MODE | P16: $P cpu=$((c1-c0)) | P1: $U cpu=$((c2-c1)) | load=$(cut -d' ' -f1 /proc/loadavg)"
kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null
