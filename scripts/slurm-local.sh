#!/usr/bin/env bash
# A real single-machine SLURM cluster (Debian 12) for the tests and CI: munge, MariaDB + slurmdbd
# (accounting: sacct is how submitit and the status checks read job states), slurmctld and one slurmd
# with 4 fake GPUs (character devices, for scheduling only).
#
#   scripts/slurm-local.sh install   # Debian packages (root; idempotent)
#   scripts/slurm-local.sh start     # configure and start every daemon, wait until the node is idle
#   scripts/slurm-local.sh stop      # cancel jobs, stop every daemon, leave nothing running
#   scripts/slurm-local.sh status
#
# Daemons are started directly (no systemd). Every step checks before it acts, so each command can be
# repeated. The cluster advertises 8 CPUs, 16000 MB and gpu:4 whatever the machine has.
set -euo pipefail

STATE=${SOFTCFG_SLURM_STATE:-/var/lib/softcfg-slurm}
NODE=$(hostname -s)
ETC=/etc/slurm
RUN=/run/softcfg-slurm
DB_PASSWORD=softcfg-local-slurmdbd
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

log() { echo "slurm-local: $*" >&2; }

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        log "must run as root (it installs packages and starts system daemons)"
        exit 1
    fi
}

install() {
    need_root
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "packages already installed"
        return
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

configure() {
    mkdir -p "$ETC" "$STATE/dev" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log" "$RUN"
    for i in 0 1 2 3; do
        [[ -c $STATE/dev/nvidia$i ]] || mknod "$STATE/dev/nvidia$i" c 1 3
    done
    cat >"$ETC/slurm.conf" <<EOF
ClusterName=softcfg
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
KillWait=5
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 RealMemory=16000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=$STATE/dev/nvidia[0-3]
EOF
    cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    chown root:root "$ETC/slurmdbd.conf"
    chmod 600 "$ETC/slurmdbd.conf"
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
}

running() { # pidfile
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() { # seconds description command...
    local seconds=$1 what=$2
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    log "timed out waiting for $what"
    return 1
}

start() {
    need_root
    command -v slurmctld >/dev/null || { log "not installed: run '$0 install' first"; exit 1; }
    configure
    mkdir -p /run/munge && chown munge:munge /run/munge
    if ! running /run/munge/munged.pid; then
        runuser -u munge -- /usr/sbin/munged
    fi
    wait_for 10 munge munge -n

    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if ! running /run/mysqld/mysqld.pid; then
        setsid runuser -u mysql -- /usr/sbin/mariadbd --pid-file=/run/mysqld/mysqld.pid \
            --socket=/run/mysqld/mysqld.sock >"$STATE/log/mariadb.log" 2>&1 </dev/null &
    fi
    wait_for 30 mariadb mysqladmin --socket=/run/mysqld/mysqld.sock ping
    mysql --socket=/run/mysqld/mysqld.sock <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF

    running "$RUN/slurmdbd.pid" || /usr/sbin/slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    running "$RUN/slurmctld.pid" || /usr/sbin/slurmctld
    wait_for 30 slurmctld scontrol ping
    running "$RUN/slurmd.pid" || /usr/sbin/slurmd -N "$NODE"
    if sinfo -h -N -o %t | grep -q drain; then
        scontrol update NodeName="$NODE" State=RESUME
    fi
    wait_for 60 "an idle node" bash -c "sinfo -h -N -o %t | grep -qx idle"
    wait_for 30 sacct sacct -n -X --starttime now-1minutes
    log "running: node $NODE, partition debug, 8 CPUs, gpu:4 (logs in $STATE/log)"
}

stop_daemon() { # name pidfile
    local pid
    if running "$2"; then
        pid=$(cat "$2")
        kill "$pid"
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        log "stopped $1"
    fi
    rm -f "$2"
}

stop() {
    need_root
    if command -v squeue >/dev/null && scontrol ping >/dev/null 2>&1; then
        squeue -h -o %i | xargs -r scancel || true
        wait_for 20 "jobs to end" bash -c '[[ -z $(squeue -h -o %i) ]]' || true
    fi
    stop_daemon slurmd "$RUN/slurmd.pid"
    stop_daemon slurmctld "$RUN/slurmctld.pid"
    stop_daemon slurmdbd "$RUN/slurmdbd.pid"
    stop_daemon mariadb /run/mysqld/mysqld.pid
    stop_daemon munged /run/munge/munged.pid
    pkill -x slurmstepd 2>/dev/null || true
    # A client of the stopped cluster fails at once instead of retrying for 9 s: Snakemake's slurm
    # executor plugin runs `scontrol show config` whenever snakemake starts. `start` rewrites the file.
    if [[ -f $ETC/slurm.conf ]] && ! grep -q '^MessageTimeout=' "$ETC/slurm.conf"; then
        echo "MessageTimeout=1" >>"$ETC/slurm.conf"
    fi
}

status() {
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        if pgrep -x "$d" >/dev/null; then echo "$d: running"; else echo "$d: stopped"; fi
    done
    scontrol ping >/dev/null 2>&1 && sinfo -N -o "%N %t %c %m %G"
}

case ${1:-} in
install | start | stop | status) "$1" ;;
*)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
