#!/usr/bin/env bash
# A real single-node SLURM cluster on this Debian machine, for trying `cluster=slurm` and for the tests.
#
#   tools/slurm_localhost.sh start    # install (apt) if needed, configure, start every daemon
#   tools/slurm_localhost.sh status   # daemons, partitions, node
#   tools/slurm_localhost.sh stop     # stop every daemon by its pid file
#
# Runs as root without systemd. It starts munge, MariaDB (socket only) + slurmdbd (submitit
# reads job states with sacct; without accounting a cancelled job makes it wait forever),
# slurmctld and slurmd. The node advertises 8 fake GPUs (character devices, so
# --gpus-per-node=4 schedules), room for two of the seed's 4-GPU jobs at once, and two partitions: `low` (default) and `high`, whose jobs
# preempt and requeue those of `low`. State and logs live in $LTH_SLURM_DIR.
set -euo pipefail

STATE=${LTH_SLURM_DIR:-/var/tmp/lth-slurm}  # configs' state, spool, logs, pid files, fake GPU devices
CLUSTER=${LTH_SLURM_CLUSTER:-lth}           # ClusterName, as sacct shows it
CPUS=${LTH_SLURM_CPUS:-16}                  # CPUs advertised (more than exist: SlurmdParameters=config_overrides)
MEMORY_MB=${LTH_SLURM_MEMORY_MB:-64000}     # memory advertised to the scheduler (not enforced)
GPUS=${LTH_SLURM_GPUS:-8}                   # fake GPUs: two 4-GPU jobs at once (a job preempting needs all of them)
NODE=$(hostname -s)
DB_SOCKET=/run/mysqld/mysqld.sock           # slurmdbd's client library looks here for StorageHost=localhost
PIDS="$STATE/pids"

die() { echo "slurm_localhost: $*" >&2; exit 1; }

install_packages() {
    local missing=()
    for binary in munged slurmctld slurmd slurmdbd sbatch mariadbd; do
        command -v "$binary" >/dev/null || missing+=("$binary")
    done
    [ ${#missing[@]} -eq 0 ] && return
    echo "slurm_localhost: installing SLURM, munge and MariaDB (missing: ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client slurmdbd mariadb-server >/dev/null
}

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

wait_for() {  # wait_for <what> <seconds> <command...>
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq "$((seconds * 4))"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "$what did not come up in ${seconds}s; see $STATE/log"
}

write_configs() {
    mkdir -p "$STATE"/{log,ctld,spool,dev,mysql} "$PIDS" /etc/slurm /run/mysqld
    chown mysql:mysql "$STATE/mysql" /run/mysqld
    for i in $(seq 0 $((GPUS - 1))); do  # Slurm drops GPUs without a device file and refuses regular files
        [ -c "$STATE/dev/gpu$i" ] || mknod "$STATE/dev/gpu$i" c 1 3
    done
    cat >/etc/slurm/slurm.conf <<EOF
# Written by tools/slurm_localhost.sh: a single-node cluster for lth.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# Requeued jobs restart in ~20 s instead of ~150 s.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No systemd or cgroups here.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
# Accounting is what submitit polls (sacct); it also records gres/gpu per job.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# A job of partition high preempts jobs of partition low: they get submitit's signal, then are requeued.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
JobRequeue=1
# A cancelled job's processes get SIGTERM, which submitit ignores (it waits for USR2), then SIGKILL this many seconds
# later: 5 rather than the default 30, so a cancelled task ends when it is cancelled.
KillWait=5
NodeName=$NODE CPUs=$CPUS RealMemory=$MEMORY_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=low Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=30
PartitionName=high Nodes=$NODE MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
    cat >/etc/slurm/gres.conf <<EOF
NodeName=$NODE Name=gpu File=$STATE/dev/gpu[0-$((GPUS - 1))]
EOF
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$PIDS/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
}

start_database() {
    alive mariadb && return
    if [ ! -d "$STATE/mysql/mysql" ]; then
        mariadb-install-db --user=mysql --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
            >"$STATE/log/mariadb-install.log" 2>&1
    fi
    runuser -u mysql -- mariadbd --datadir="$STATE/mysql" --socket="$DB_SOCKET" --skip-networking \
        --pid-file="$STATE/mysql/mariadb.pid" --log-error="$STATE/mysql/mariadb.log" >/dev/null 2>&1 &
    echo $! >"$PIDS/mariadb.pid"
    wait_for MariaDB 30 mariadb --socket="$DB_SOCKET" -e "select 1"
}

cancel_leftover_jobs() {
    # A controller restored from its state directory believes the jobs of its previous life
    # are still queued or running, although their processes died with it (a stopped machine,
    # a killed test run). Left alone, such a "running" job holds the node's GPUs until the
    # controller gives up on it, about 30 minutes later, and every new job waits behind it.
    local leftover
    leftover=$(squeue -h -o %A | sort -u)
    [ -z "$leftover" ] && return
    echo "slurm_localhost: cancelling $(echo "$leftover" | wc -l) job(s) left from before the restart:" $leftover
    # shellcheck disable=SC2086  # one id per word
    scancel $leftover
    wait_for "an empty queue" 60 bash -c '[ -z "$(squeue -h)" ]'
}

start() {
    [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts system daemons)"
    install_packages
    write_configs
    if ! alive munged; then
        mkdir -p /run/munge "$STATE/munge" && chown munge:munge /run/munge "$STATE/munge"
        [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
        runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log"
        cp "$STATE/munge/munged.pid" "$PIDS/munged.pid"
    fi
    start_database
    alive slurmdbd || slurmdbd
    wait_for slurmdbd 30 sacctmgr -n list cluster
    local restarted=0
    alive slurmctld || { slurmctld; restarted=1; }
    wait_for slurmctld 30 scontrol ping
    alive slurmd || slurmd -N "$NODE"
    wait_for slurmd 30 bash -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
    if [ "$restarted" -eq 1 ]; then cancel_leftover_jobs; fi
    echo "slurm_localhost: up (cluster $CLUSTER, node $NODE, partitions low and high, $GPUS GPUs); state in $STATE"
}

stop() {
    for daemon in slurmd slurmctld slurmdbd mariadb munged; do
        if alive "$daemon"; then
            kill "$(cat "$PIDS/$daemon.pid")"
            for _ in $(seq 40); do alive "$daemon" || break; sleep 0.25; done
            echo "slurm_localhost: stopped $daemon"
        fi
        rm -f "$PIDS/$daemon.pid"
    done
}

status() {
    local down=0
    for daemon in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$daemon"; then echo "$daemon: running (pid $(cat "$PIDS/$daemon.pid"))"
        else echo "$daemon: stopped"; down=1; fi
    done
    [ "$down" -eq 0 ] && sinfo -o "%P %a %D %t %G"
    return "$down"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
