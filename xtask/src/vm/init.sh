#!/bin/busybox sh
# The kernel-matrix guest's init (PID 1): mount what oomreap needs, find which function attach
# modes this kernel allows, run the test suites once per mode, report on the console in lines
# starting with "OOMREAP-VM", power off. /vm/plan (written by `cargo xtask vm-test`) sets
# MODE_SUITES (run once per mode in MODES), ONCE_SUITES (run once, in the default mode: the
# best the kernel allows) and FILTER.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
# /usr/local/sbin first: iproute2's ip (the soft-RoCE scenarios' dummy netdev) over busybox's.
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root RUST_BACKTRACE=1
# The storm test's size: TCG runs ten times slower than the host, which storms with 200.
export OOMREAP_STORM_VICTIMS=50

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /root
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# /tmp stays the initramfs's own (already in memory): a checkout under /tmp has its binaries
# there, at the paths the tests were built with.
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
# cgroup v2 only, as Debian 6.12+ kernels are: memory control for the tests' cgroups.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
ip link set lo up
# The kernel package's own modules, unpacked by the host, in dependency order: FUSE (a module
# before 6.12) and soft-RoCE (rdma_rxe and what it needs) where the kernel has them.
for module in /vm/modules/*.ko; do
    [ -f "$module" ] && { insmod "$module" || echo "OOMREAP-VM insmod-failed $module"; }
done

say() { echo "OOMREAP-VM $*"; }
. /vm/plan
# This kernel line's modes, of those asked for (`cargo xtask vm-test` writes them).
[ -f /vm/modes ] && MODES=$(cat /vm/modes)
say kernel "$(uname -r)"

oomreap doctor --json > /tmp/doctor.json 2>/tmp/doctor.err
allowed=off
for mode in fentry kprobe; do
    if grep -q "\"name\":\"$mode __oom_reap_task_mm\",\"allowed\":true" /tmp/doctor.json; then
        allowed="$allowed $mode"
    else
        say refused "$mode"
    fi
done
say allowed $allowed

uptime() { cut -d' ' -f1 /proc/uptime; }
run_suite() { # suite mode
    name=$(basename "$1")
    say begin suite=$name mode=$2 uptime=$(uptime)
    OOMREAP_FUNCTIONS=$2 "$1" --test-threads=1 $FILTER 2>&1
    rc=$?
    say end suite=$name mode=$2 rc=$rc uptime=$(uptime)
}

for mode in $MODES; do
    case " $allowed " in
    *" $mode "*) ;;
    *) say skip mode=$mode; continue ;;
    esac
    for suite in $MODE_SUITES; do run_suite "$suite" "$mode"; done
done
for suite in $ONCE_SUITES; do
    # A suite this kernel line leaves to others (`cargo xtask vm-test` names them).
    grep -qw "$(basename "$suite")" /vm/not-here 2>/dev/null && { say skip suite=$(basename "$suite"); continue; }
    run_suite "$suite" auto
done
# The oldest kernel of each architecture also gets the static binary users download, and the
# test that traces a kill with it (`cargo xtask vm-test` puts both under /vm/static).
if [ -f /vm/static/test ]; then
    say begin suite=static-binary mode=auto
    OOMREAP_DIST_DIR=/vm/static /vm/static/packaging --test-threads=1 --exact "$(cat /vm/static/test)" 2>&1
    say end suite=static-binary mode=auto rc=$?
fi
# Recordings for docs and goldens (`cargo xtask vm-test --capture`): each line of /vm/captures
# is "NAME MODE SCENARIO [ARGS]"; the recording goes out as base64 between markers, which the
# host writes to target/vm/captures/.
capture() { # name mode scenario args...
    name=$1 mode=$2
    shift 2
    case " $allowed " in *" $mode "*) ;; *) say capture-skipped "$name" mode; return ;; esac
    OOMREAP_FUNCTIONS=$mode oomreap trace --record "/tmp/$name.rec" >/dev/null 2>"/tmp/$name.err" &
    tracer=$!
    tries=0
    until grep -q "tracing" "/tmp/$name.err" || [ $tries -ge 60 ]; do sleep 1; tries=$((tries + 1)); done
    if oomreap inject "$@" >/dev/null 2>"/tmp/$name.inject"; then
        sleep 2
        kill -INT $tracer
        wait $tracer
        say capture-begin "$name"
        base64 "/tmp/$name.rec"
        say capture-end "$name"
    else
        kill -INT $tracer
        wait $tracer
        say capture-skipped "$name" "$(tail -n 1 "/tmp/$name.inject")"
    fi
}
if [ -f /vm/captures ]; then
    while read -r line; do
        [ -n "$line" ] && capture $line
    done < /vm/captures
fi
say done
sync
poweroff -f
