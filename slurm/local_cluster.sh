#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try the SLURM launcher without a real cluster
# (docs/cluster.md, "A SLURM cluster on a laptop"; CI's `make slurm-check` runs on it).
#
#   slurm/local_cluster.sh up      # install slurm-wlm if missing, write the config, start both daemons
#   export SLURM_CONF=/tmp/pose3d-slurm/slurm.conf   # what `up` prints: sinfo, sbatch, srun use it
#   slurm/local_cluster.sh status  # sinfo of the node
#   slurm/local_cluster.sh down    # stop the daemons (by their pid files)
#
# Runs as root (it starts slurmctld and slurmd, and installs with apt-get). Everything it writes
# lives in POSE3D_SLURM_DIR (default /tmp/pose3d-slurm): slurm.conf, the daemons' state, spool,
# pid and log files; nothing under /etc is touched. The configuration needs neither munge nor
# cgroups, which containers often lack: no authentication (auth/none, cred/none: any local user
# is trusted, so use it on a single-user machine only), processes tracked by their parent ids
# (proctrack/linuxproc), no task binding (task/none), cores as the consumable resource
# (select/cons_tres, CR_CPU), no accounting database (so `sacct` has nothing to say: submitit
# then follows a job by its result file), and one node with this machine's CPUs and memory.
set -euo pipefail

DIR="${POSE3D_SLURM_DIR:-/tmp/pose3d-slurm}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"
UP_TIMEOUT_S="${UP_TIMEOUT_S:-60}"

say() { echo "local_cluster: $*"; }
die() { echo "local_cluster: error: $*" >&2; exit 2; }

alive() {  # alive PIDFILE: the daemon that wrote it still runs
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_slurm() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurmctld/slurmd not found and no apt-get to install them; install SLURM (slurm-wlm) yourself"
    say "installing Debian's slurm-wlm (apt-get, about a minute)"
    apt-get update -qq
    # the package's own start scripts are refused (no init system here); this script starts the daemons
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm >/dev/null
}

write_config() {
    local node cpus memory host
    host="$(hostname -s)"
    # the hardware as slurmd sees it: "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105"
    node="$(slurmd -C | head -1)"
    cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")"
    memory="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")"
    [[ -n "$cpus" && -n "$memory" ]] || die "could not read this machine's CPUs and memory from 'slurmd -C' ($node)"
    mkdir -p "$DIR/state" "$DIR/spool"
    cat >"$CONF" <<CONF
# written by slurm/local_cluster.sh: a one-node cluster on $host, no munge, no cgroups
ClusterName=pose3d-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/none
# a requeued job may start again after this many seconds (SLURM default 120)
AuthInfo=cred_expire=10
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# a cancelled or requeued job's processes get SIGTERM, then SIGKILL this many seconds later
KillWait=30
# finished jobs stay visible to squeue/scontrol this long (no accounting database)
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

node_state() {
    sinfo --noheader --format=%T 2>/dev/null | head -1 || true
}

up() {
    [[ $EUID -eq 0 ]] || die "run as root (it starts slurmctld and slurmd as root)"
    install_slurm
    if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
        say "already up ($CONF)"
    else
        down quiet
        write_config
        # the state of an earlier cluster stays (StateSaveLocation): job ids go on from where they
        # were, so that a new job never takes the id, and so the submitit folder, of an old one
        slurmctld -f "$CONF"
        slurmd -f "$CONF"
    fi
    local waited=0 state=""
    until [[ "$(node_state)" == idle* ]]; do
        state="$(node_state)"
        if [[ "$state" == down* || "$state" == drain* ]]; then  # e.g. a node left down by an earlier run
            scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        fi
        (( waited++ < UP_TIMEOUT_S )) || die "the node is not idle after ${UP_TIMEOUT_S} s (sinfo: '${state:-no answer}'); see $DIR/slurmctld.log and $DIR/slurmd.log"
        sleep 1
    done
    sinfo
    say "up; point SLURM's commands at it with: export SLURM_CONF=$CONF"
}

cancel_jobs() {  # nothing of a job outlives the cluster: cancel them all and wait for their processes
    local jobs
    jobs="$(squeue --noheader --format=%A 2>/dev/null || true)"
    [[ -n "$jobs" ]] || return 0
    say "cancelling the jobs still queued or running: $(tr '\n' ' ' <<<"$jobs")"
    scancel $jobs || true
    for _ in $(seq 1 90); do [[ -z "$(squeue --noheader --format=%A 2>/dev/null)" ]] && return 0; sleep 1; done
    say "some jobs did not end within 90 s; stopping the daemons anyway"
}

down() {
    local name pidfile pid stopped=()
    alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && cancel_jobs
    for name in slurmd slurmctld; do
        pidfile="$DIR/$name.pid"
        alive "$pidfile" || continue
        pid="$(cat "$pidfile")"
        kill -TERM "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        rm -f "$pidfile"
        stopped+=("$name")
    done
    [[ "${1:-}" == quiet ]] || say "${stopped[*]:-nothing} stopped"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) sinfo; squeue ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|status|env   (state in ${DIR})" >&2; exit 2 ;;
esac
