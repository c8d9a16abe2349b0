#!/usr/bin/env bash
# Scale experiments for docs/SCALING.md (run by hand, as root, on an otherwise quiet machine;
# never by tests or CI). Appends one JSON object per run to OUT/results.jsonl:
#   {"experiment": ..., "config": ..., "round": r, "result": <elle bench comm|grow --json>}
#
#   scripts/scaling.sh [--out DIR] [--rounds N] [--steps N] [--layers L --width D --heads H]
#                      [--vocab V] [--seq T] [--batch B] [--bucket-mb M[,M2...]] [--rates R[,R2...]]
#                      [--own-sessions] [--first-round N] [--variants V[,V2...]]
#                      [--hosts N] [--elle PATH] [--label TEXT]
#                      [local] [weak] [netns] [calibrate] [grow]
#
# --hosts N: the netns experiment's namespaces (one rank each, default 2); more than the 2 cores
# slow the computation, so such runs show what communication leaves exposed, not speed.
# --elle PATH runs another build (e.g. of an earlier commit, for before/after); --label TEXT is
# appended to the netns configurations' names to tell the builds apart.
# local:     on this machine: 1 rank x 1 thread (batch B and 2B), 1 rank x 2 threads (batch 2B),
#            2 ranks x 1 thread (batch B each; shared memory). Weak scaling compares 2 ranks x B
#            with 1 rank x B; strong scaling compares them with the same 2B sequences on 1 rank.
# weak:      weak scaling only, back to back: 1 rank x 1 thread (batch B), 2 ranks x 1 thread bound
#            to a core each (Open MPI's default for 2 ranks), 2 ranks x 1 thread unbound.
#            --own-sessions: instead, 1 x 1 and 2 x 1 unbound with every elle process in a session
#            of its own (setsid -w). With the kernel's autogroup scheduling (sched_autogroup_enabled)
#            a busy machine shares the CPU between sessions, not threads, so 2 ranks in one session
#            get what 1 rank gets; in their own sessions each rank is scheduled like a job of its own.
# netns:     2 ranks in 2 network namespaces ("hosts") behind a bridge, Open MPI over TCP, each
#            link limited with tc tbf to 1 and 10 Gbit/s, and unlimited (--rates, default
#            1gbit,10gbit,none): all-reduce by size and
#            the model's steps in bench comm's four modes (compute, overlapped, serial, alone), once
#            per bucket size given (local runs use the first) and per variant (--variants, default
#            fp32): what a step computes in and sends, '+'-joined words: fp32 (float32 step and
#            exchange), step-bf16 (--precision bf16), x-bf16 (--allreduce-dtype bf16), zero1
#            (--zero 1); e.g. --variants fp32,x-bf16,zero1,step-bf16+x-bf16.
# calibrate: all-reduce by size only, on 2, 3 and 4 namespaces at 1 and 10 Gbit/s. More ranks
#            than the 2 cores make computation CPU-bound, so these runs calibrate communication
#            (bandwidth and per-step latency of the ring) only.
# grow:      elle bench grow (rank 0 grows, broadcast, verification) on 2 namespaces at 1 and
#            10 Gbit/s: the growth broadcast's cost.
# Configurations are interleaved: every round runs each of them once, in rotating order.
# OPENBLAS_CORETYPE=Haswell is set for the runs (timed). Needs root (CAP_NET_ADMIN) for netns.
# Each record carries the machine's load average before and after the run (shared machine).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
elle="$repo/.build/release/elle"
out="$repo/runs/scaling"
rounds=3 steps=4 layers=6 width=384 heads=6 vocab=16384 seq=128 batch=8 bucket=25 rates=1gbit,10gbit,none variants=fp32
own_sessions=0 first=1 netns_hosts=2 label="" 
parts=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --layers) layers="$2"; shift 2 ;;
        --width) width="$2"; shift 2 ;;
        --heads) heads="$2"; shift 2 ;;
        --vocab) vocab="$2"; shift 2 ;;
        --seq) seq="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --bucket-mb) bucket="$2"; shift 2 ;;
        --rates) rates="$2"; shift 2 ;;
        --variants) variants="$2"; shift 2 ;;
        --own-sessions) own_sessions=1; shift ;;
        --hosts) netns_hosts="$2"; shift 2 ;;
        --elle) elle="$2"; shift 2 ;;
        --label) label="$2"; shift 2 ;;
        --first-round) first="$2"; shift 2 ;;  # round numbers of a continued series
        local|weak|netns|calibrate|grow) parts+=("$1"); shift ;;
        *) echo "scaling.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ ${#parts[@]} -gt 0 ]] || parts=(local netns calibrate grow)
[[ -x "$elle" ]] || { echo "scaling.sh: build first (swift build -c release)" >&2; exit 1; }
mkdir -p "$out"
results="$out/results.jsonl"
export OPENBLAS_CORETYPE=Haswell
model=(--layers "$layers" --width "$width" --heads "$heads" --vocab "$vocab" --seq "$seq" --steps "$steps")
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Runs COMMAND..., takes the last JSON line of its output and appends it to results.jsonl.
record() {
    local experiment="$1" config="$2" round="$3"; shift 3
    log "$experiment/$config round $round: $*"
    local output load_before started
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)  # 1, 5, 15-minute load: other users of the cores
    started=$(date -u +%H:%M:%S)
    if ! output=$("$@" 2>"$out/last.err"); then
        echo "scaling.sh: $experiment/$config failed: $(tail -5 "$out/last.err")" >&2
        return 1
    fi
    local json load_after
    json=$(grep '^{' <<<"$output" | tail -1)
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "{\"experiment\":\"$experiment\",\"config\":\"$config\",\"round\":$round,\"load_before\":\"$load_before\",\"load_after\":\"$load_after\",\"started\":\"$started\",\"result\":$json}" >> "$results"
}

# MARK: network namespaces behind a bridge

tag="sc$$"
octet=$(( 16 + $$ % 200 ))
subnet="10.232.$octet.0/24"
hosts=()
cleanup() {
    for h in "${hosts[@]}"; do ip netns del "$tag-$h" 2>/dev/null || true; done
    ip netns del "$tag-sw" 2>/dev/null || true
}
trap cleanup EXIT

# Creates N namespaces h0..h(N-1), each with one veth link to a bridge in namespace sw.
make_hosts() {
    cleanup
    hosts=()
    ip netns add "$tag-sw"
    ip -n "$tag-sw" link add br0 type bridge
    ip -n "$tag-sw" link set br0 up
    for ((i = 0; i < $1; i++)); do
        local h="h$i"
        hosts+=("$h")
        ip netns add "$tag-$h"
        ip link add "$tag-$i" type veth peer name "$tag-s$i"
        ip link set "$tag-$i" netns "$tag-$h"
        ip link set "$tag-s$i" netns "$tag-sw"
        ip -n "$tag-sw" link set "$tag-s$i" master br0 up
        ip -n "$tag-$h" addr add "10.232.$octet.$((i + 1))/24" dev "$tag-$i"
        ip -n "$tag-$h" link set lo up
        ip -n "$tag-$h" link set "$tag-$i" up
    done
    cat > "$out/agent.sh" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
host="\$1"; shift
exec ip netns exec "$tag-\$host" /bin/sh -c "\$*"
EOF
    chmod +x "$out/agent.sh"
}

# Limits every link, both directions, to RATE (tc tbf; "none" removes the limit).
set_rate() {
    local rate="$1" burst=256kb i
    [[ "$rate" == 10gbit ]] && burst=2mb
    for ((i = 0; i < ${#hosts[@]}; i++)); do
        ip netns exec "$tag-h$i" tc qdisc del dev "$tag-$i" root 2>/dev/null || true
        ip netns exec "$tag-sw" tc qdisc del dev "$tag-s$i" root 2>/dev/null || true
        [[ "$rate" == none ]] && continue
        ip netns exec "$tag-h$i" tc qdisc add dev "$tag-$i" root tbf rate "$rate" burst "$burst" latency 50ms
        ip netns exec "$tag-sw" tc qdisc add dev "$tag-s$i" root tbf rate "$rate" burst "$burst" latency 50ms
    done
}

# mpirun inside h0 with one rank per namespace.
netns_mpirun() {
    local list
    list=$(IFS=,; echo "${hosts[*]}")
    timeout 1800 ip netns exec "$tag-h0" mpirun --allow-run-as-root -H "$list" -n "${#hosts[@]}" --bind-to none \
        --mca plm_rsh_agent "$out/agent.sh" --mca btl tcp,self \
        --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet" --mca rtc_hwloc_vmhole none \
        -x OPENBLAS_CORETYPE "$@"
}

# MARK: experiments

run_local() {
    local r="$1" configs=(1x1-b1 1x1-b2 1x2-b2 2x1-b1) k
    for ((k = 0; k < ${#configs[@]}; k++)); do
        local c=${configs[$(( (k + r) % ${#configs[@]} ))]}
        case "$c" in
            1x1-b1) record local "$c" "$r" "$elle" bench comm "${model[@]}" --batch "$batch" --threads 1 --json ;;
            1x1-b2) record local "$c" "$r" "$elle" bench comm "${model[@]}" --batch $((2 * batch)) --threads 1 --json ;;
            1x2-b2) record local "$c" "$r" "$elle" bench comm "${model[@]}" --batch $((2 * batch)) --threads 2 --json ;;
            2x1-b1) record local "$c" "$r" mpirun --allow-run-as-root -n 2 --bind-to core -x OPENBLAS_CORETYPE \
                        "$elle" bench comm "${model[@]}" --batch "$batch" --threads 1 --bucket-mb "${bucket%%,*}" --json ;;
        esac
    done
}

run_weak() {
    local r="$1" configs=(1x1-b1 2x1-b1 2x1-b1-unbound) k
    if [[ $own_sessions == 1 ]]; then
        for ((k = 0; k < 2; k++)); do
            if (( (k + r) % 2 == 0 )); then
                record weak 1x1-b1-sessions "$r" setsid -w "$elle" bench comm "${model[@]}" --batch "$batch" --threads 1 --json
            else
                record weak 2x1-b1-sessions "$r" mpirun --allow-run-as-root -n 2 --bind-to none -x OPENBLAS_CORETYPE \
                    setsid -w "$elle" bench comm "${model[@]}" --batch "$batch" --threads 1 --bucket-mb "${bucket%%,*}" --json
            fi
        done
        return
    fi
    for ((k = 0; k < ${#configs[@]}; k++)); do
        local c=${configs[$(( (k + r) % ${#configs[@]} ))]}
        case "$c" in
            1x1-b1) record weak "$c" "$r" "$elle" bench comm "${model[@]}" --batch "$batch" --threads 1 --json ;;
            2x1-b1) record weak "$c" "$r" mpirun --allow-run-as-root -n 2 --bind-to core -x OPENBLAS_CORETYPE \
                        "$elle" bench comm "${model[@]}" --batch "$batch" --threads 1 --bucket-mb "${bucket%%,*}" --json ;;
            2x1-b1-unbound) record weak "$c" "$r" mpirun --allow-run-as-root -n 2 --bind-to none -x OPENBLAS_CORETYPE \
                        "$elle" bench comm "${model[@]}" --batch "$batch" --threads 1 --bucket-mb "${bucket%%,*}" --json ;;
        esac
    done
}

# The bench comm flags of a variant name (see --variants).
variant_flags() {
    local word
    for word in ${1//+/ }; do
        case "$word" in
            fp32) ;;
            step-bf16) echo --precision bf16 ;;
            x-bf16) echo --allreduce-dtype bf16 ;;
            zero1) echo --zero 1 ;;
            *) echo "scaling.sh: unknown variant word $word in $1" >&2; exit 2 ;;
        esac
    done
}

run_netns() {
    local r="$1" k b v
    local -a list=(${rates//,/ }) vlist=(${variants//,/ })
    [[ ${#hosts[@]} == "$netns_hosts" ]] || make_hosts "$netns_hosts"
    for ((k = 0; k < ${#list[@]}; k++)); do
        local rate=${list[$(( (k + r) % ${#list[@]} ))]}
        set_rate "$rate"
        for b in ${bucket//,/ }; do
            for ((v = 0; v < ${#vlist[@]}; v++)); do
                local variant=${vlist[$(( (v + r) % ${#vlist[@]} ))]} suffix=""
                [[ "$variant" != fp32 ]] && suffix="-$variant"
                record netns "${netns_hosts}x1-$rate-bucket$b$suffix$label" "$r" netns_mpirun "$elle" bench comm "${model[@]}" --batch "$batch" \
                    --threads 1 --bucket-mb "$b" $(variant_flags "$variant") --json
            done
        done
    done
}

run_calibrate() {
    local r="$1" n rate
    for n in 2 3 4; do
        make_hosts "$n"
        for rate in 1gbit 10gbit; do
            set_rate "$rate"
            record calibrate "${n}x1-$rate" "$r" netns_mpirun "$elle" bench comm --no-model --threads 1 \
                --sizes-mb 0.004,0.0625,0.25,1,4,16,64 --repeats 5 --json
        done
    done
    make_hosts 2
}

run_grow() {
    local r="$1" rate
    for rate in 1gbit 10gbit; do
        set_rate "$rate"
        record grow "2x1-$rate" "$r" netns_mpirun "$elle" bench grow --vocab "$vocab" --threads 1 --json \
            --from "$layers/$width/$heads" --to 8/512/8 --context "$seq" --repeats 3
    done
}

needs_netns=0
for p in "${parts[@]}"; do [[ "$p" != local && "$p" != weak ]] && needs_netns=1; done
if [[ $needs_netns == 1 ]]; then
    [[ "$(id -u)" -eq 0 ]] || { echo "scaling.sh: network namespaces need root" >&2; exit 1; }
    make_hosts 2
fi
for ((r = first; r < first + rounds; r++)); do
    for p in "${parts[@]}"; do "run_$p" "$r"; done
done
log "results in $results"
