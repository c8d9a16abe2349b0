#!/usr/bin/env bash
# Multi-host test on one machine: two network namespaces ("hosts") joined by a veth pair, one
# rank in each, Open MPI over TCP between them. It trains a few steps with 2 ranks x 1
# micro-batch across the namespaces and checks that the losses and the final parameter hash
# equal a single-process run with 2 micro-batches.
#
#   cluster/netns-test.sh [PATH/TO/elle]
#
# Exit status: 0 passed, 1 failed, 77 skipped (namespaces not permitted here; the reason is
# printed). Needs root (CAP_NET_ADMIN), iproute2 and Open MPI.
#
# How the launch works: mpirun runs inside the first namespace and starts one Open MPI daemon per
# "host" through an rsh agent (written below) that runs its command with `ip netns exec` in the
# namespace named after the host, instead of ssh. TCP (btl and out-of-band) is restricted to the
# veth subnet. Host names must not contain `_` (Open MPI rejects them).
# `rtc_hwloc_vmhole none`: Open MPI 4.1's daemon maps its hwloc topology into the "biggest hole"
# of its address space; here that hole sometimes borders the stack and orted segfaults in
# hwloc_shmem_topology_write (about 1 launch in 4). Turning the shared topology off avoids it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
elle="${1:-$repo/.build/release/elle}"
skip() { echo "netns-test: SKIP: $*"; exit 77; }
fail() { echo "netns-test: FAIL: $*" >&2; exit 1; }

[[ -x "$elle" ]] || fail "no elle executable at $elle (build with swift build -c release)"
command -v mpirun >/dev/null 2>&1 || skip "mpirun is not installed"
command -v ip >/dev/null 2>&1 || skip "iproute2 (ip) is not installed"
[[ "$(id -u)" -eq 0 ]] || skip "creating network namespaces needs root (CAP_NET_ADMIN); running as uid $(id -u)"

# Names and a /24 subnet unique to this run, so concurrent runs do not collide.
tag="e$$"
subnet_octet=$(( 16 + $$ % 200 ))
subnet="10.231.$subnet_octet.0/24"
hosts=(ellehost0 ellehost1)
work="$(mktemp -d /tmp/elle-netns.XXXXXX)"
cleanup() {
    for h in "${hosts[@]}"; do ip netns del "$tag-$h" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

if ! error=$(ip netns add "$tag-${hosts[0]}" 2>&1); then
    skip "network namespaces are not permitted here: ip netns add: $error"
fi
ip netns add "$tag-${hosts[1]}" || fail "ip netns add $tag-${hosts[1]}"
ip link add "$tag-a" type veth peer name "$tag-b" || skip "veth pairs are not permitted here"
ip link set "$tag-a" netns "$tag-${hosts[0]}"
ip link set "$tag-b" netns "$tag-${hosts[1]}"
ip -n "$tag-${hosts[0]}" addr add "10.231.$subnet_octet.1/24" dev "$tag-a"
ip -n "$tag-${hosts[1]}" addr add "10.231.$subnet_octet.2/24" dev "$tag-b"
for i in 0 1; do
    ip -n "$tag-${hosts[$i]}" link set lo up
done
ip -n "$tag-${hosts[0]}" link set "$tag-a" up
ip -n "$tag-${hosts[1]}" link set "$tag-b" up

# The rsh agent: called like ssh ("agent [options] HOST COMMAND..."), runs COMMAND in HOST's namespace.
cat > "$work/agent.sh" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
host="\$1"; shift
exec ip netns exec "$tag-\$host" /bin/sh -c "\$*"
EOF
chmod +x "$work/agent.sh"

mpirun_in_ns=(timeout 120 ip netns exec "$tag-${hosts[0]}" mpirun --allow-run-as-root
    -H "${hosts[0]},${hosts[1]}" -n 2
    --mca plm_rsh_agent "$work/agent.sh"
    --mca btl tcp,self --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet"
    --mca rtc_hwloc_vmhole none)

# Where each rank runs: rank r must see only its own namespace's address.
placement=$("${mpirun_in_ns[@]}" /bin/sh -c \
    'echo "rank $OMPI_COMM_WORLD_RANK: $(ip -o -4 addr show | grep -o "10\.231\.[0-9]*\.[0-9]*" | tr "\n" " ")"' 2>&1) \
    || fail "mpirun across the namespaces failed: $placement"
echo "$placement" | sort
grep -q "rank 0: 10.231.$subnet_octet.1 *$" <<<"$placement" || fail "rank 0 is not alone in ${hosts[0]}: $placement"
grep -q "rank 1: 10.231.$subnet_octet.2 *$" <<<"$placement" || fail "rank 1 is not alone in ${hosts[1]}: $placement"

train=(train --data "$repo/data/sample/literature" --layers 2 --width 32 --heads 2 --seq 32 --batch 4
    --steps 6 --log-every 1 --eval-every 3 --threads 1 --seed 5)
"$elle" "${train[@]}" --accumulation 2 --out "$work/single" > "$work/single.log" 2>&1 \
    || fail "single-process run failed: $(cat "$work/single.log")"
"${mpirun_in_ns[@]}" "$elle" "${train[@]}" --accumulation 1 --out "$work/multi" > "$work/multi.log" 2>&1 \
    || fail "2-rank run across the namespaces failed: $(cat "$work/multi.log")"

# Losses, gradient norms and validation losses (metrics.jsonl without timings) and the final
# parameter hash must be equal bit for bit.
metrics() { sed -E 's/,?"(tokens_per_second|mfu)":[^,}]*//g' "$1/metrics.jsonl"; }
diff <(metrics "$work/single") <(metrics "$work/multi") > "$work/diff" || fail "metrics differ: $(cat "$work/diff")"
single_hash=$(grep -o 'parameters xxh64 [0-9a-f]*' "$work/single.log") || fail "no hash in the single-process log"
multi_hash=$(grep -o 'parameters xxh64 [0-9a-f]*' "$work/multi.log") || fail "no hash in the 2-rank log"
[[ "$single_hash" == "$multi_hash" ]] || fail "final parameters differ: $single_hash vs $multi_hash"
grep -q "identical on 2 rank(s)" "$work/multi.log" || fail "the ranks' parameters were not identical"
echo "netns-test: PASS: 2 ranks in 2 namespaces over TCP ($subnet), $(grep -c '"loss"' "$work/multi/metrics.jsonl") steps, metrics and $multi_hash equal to 1 rank x 2 micro-batches"
