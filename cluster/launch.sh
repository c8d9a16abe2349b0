#!/usr/bin/env bash
# Launches an elle command on several ranks with Open MPI's mpirun, set up the way elle wants:
# no core binding (each rank runs its own threads), the thread count passed to every rank
# (OPENBLAS_NUM_THREADS, which elle reads as its --threads default), the environment elle needs
# forwarded to remote hosts, and `elle` resolved to this checkout's release build.
#
#   cluster/launch.sh [-n RANKS] [--hostfile FILE] [--threads T] [--dry-run] [MPIRUN OPTIONS] -- COMMAND...
#
#   cluster/launch.sh -n 2 -- elle train --data data/sample/literature --out runs/dp2 --steps 600
#   cluster/launch.sh -n 8 --hostfile cluster/hostfile.example --threads 16 -- elle train ...
#
# -n         ranks (default 2)
# --hostfile Open MPI hostfile (see hostfile.example); without it every rank runs on this host
# --threads  threads per rank (default: this host's cores / ranks on it, at least 1)
# --dry-run  print the mpirun command instead of running it
# Anything else before `--` goes to mpirun unchanged (e.g. --mca btl_tcp_if_include eth0).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
ranks=2
hostfile=""
threads=""
dry_run=0
extra=()
while (($#)); do
    case "$1" in
        -n|-np|--np) ranks="$2"; shift 2 ;;
        --hostfile) hostfile="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) extra+=("$1"); shift ;;
    esac
done
if (($# == 0)); then
    echo "launch.sh: no command after --; e.g. cluster/launch.sh -n 2 -- elle train --data FILE" >&2
    exit 2
fi
if ! [[ "$ranks" =~ ^[1-9][0-9]*$ ]]; then
    echo "launch.sh: -n must be a positive number of ranks (got '$ranks')" >&2
    exit 2
fi
if [[ -n "$hostfile" && ! -r "$hostfile" ]]; then
    echo "launch.sh: cannot read hostfile $hostfile" >&2
    exit 2
fi

# Threads per rank: this host's cores shared among the ranks placed on it (with a hostfile, the
# first host's slots), so ranks never oversubscribe cores.
if [[ -z "$threads" ]]; then
    per_host="$ranks"
    if [[ -n "$hostfile" ]]; then
        slots="$(grep -v '^\s*#' "$hostfile" | grep -o 'slots=[0-9]*' | head -1 | cut -d= -f2 || true)"
        per_host="${slots:-1}"
        ((per_host > ranks)) && per_host="$ranks"
    fi
    threads=$(( $(nproc) / per_host ))
    ((threads < 1)) && threads=1
fi
if ! [[ "$threads" =~ ^[1-9][0-9]*$ ]]; then
    echo "launch.sh: --threads must be a positive number (got '$threads')" >&2
    exit 2
fi

# `elle` means this checkout's release build unless an elle is on PATH.
command=("$@")
if [[ "${command[0]}" == "elle" ]] && ! command -v elle >/dev/null 2>&1; then
    command[0]="$repo/.build/release/elle"
    if [[ ! -x "${command[0]}" ]]; then
        echo "launch.sh: ${command[0]} is missing; build it with scripts/setup.sh (or swift build -c release)" >&2
        exit 2
    fi
fi

# rtc_hwloc_vmhole none: Open MPI 4.1's remote daemons (orted) otherwise map a shared hwloc
# topology at an address they guess, which can collide with the stack and crash the daemon
# (seen in about 1 launch in 4 here); the sharing is only an optimization.
# odls_base_sigkill_timeout 30: when a rank dies, mpirun signals the others (SIGTERM) and kills
# them (SIGKILL) that many seconds apart (default 1 s); the survivors need that time to save the
# last completed update (README: "Running on several ranks").
mpirun_args=(-n "$ranks" --bind-to none -x "OPENBLAS_NUM_THREADS=$threads" -x PATH --mca rtc_hwloc_vmhole none
             --mca odls_base_sigkill_timeout 30)
[[ -n "${LD_LIBRARY_PATH:-}" ]] && mpirun_args+=(-x LD_LIBRARY_PATH)
# Forward an explicit OpenBLAS kernel choice to every rank (see README: Threads and OpenBLAS).
[[ -n "${OPENBLAS_CORETYPE:-}" ]] && mpirun_args+=(-x OPENBLAS_CORETYPE)
[[ -n "$hostfile" ]] && mpirun_args+=(--hostfile "$hostfile")
# More ranks than cores on one host is allowed (slower, never wrong).
[[ -z "$hostfile" ]] && mpirun_args+=(--oversubscribe)
[[ "$(id -u)" -eq 0 ]] && mpirun_args+=(--allow-run-as-root)
mpirun_args+=("${extra[@]}")

if ((dry_run)); then
    printf '%q ' mpirun "${mpirun_args[@]}" "${command[@]}"
    echo
    exit 0
fi
exec mpirun "${mpirun_args[@]}" "${command[@]}"
