#!/bin/bash
# electd.sh — dlm-electd's `dlm` backend (issue #22) on two Debian 12 VMs
# running corosync + dlm_controld: the fsdlm-lab of /work/shared/fsdlm-lab
# (its image must be built first: CACHE=/var/tmp/fsdlm-lab/cache
# build-image.sh). The lab's dlm.conf has enable_fencing=0, so this also
# proves the refusal. Boots two fresh VMs, runs the checks, prints
# PASS/FAIL per check, stops the VMs (KEEP=1 leaves them running).
#
#   1 without lock.allow_unfenced the daemon refuses to start (exit 78,
#     naming the key), changing nothing
#   2 with it: node1 started first is master, node2 standby (one master)
#   3 SIGTERM of node1's daemon: it releases (exit 0); node2 master
#   4 SIGKILL of node2's daemon: its lock stays (a PERSISTENT orphan), so
#     node1 stays standby; `cleanup` on node2 runs the release step and
#     lets go: node1 master
#   5 SIGKILL of node1's daemon, then `run` again without cleanup: it
#     adopts its orphan and is master again; node2 stayed standby
#   6 SIGTERM of a standby waiting in the DLM queue (standby = "wait",
#     the default here): it cancels the request and exits; the master
#     stays master and nothing is left queued
#   7 both stopped: no lockspace left on either node (the daemon leaves)
#
# The master's acquire/release hooks append to /tmp/events.log on its
# node; every check asserts on `status --json` and those logs, never on
# the daemon's own messages (`status` is its view, asked like an admin).
# Environment: LAB, CACHE, KEEP=1, BIN (the
# static dlm-electd; default the repo's static release build).
set -uo pipefail
ME=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab.sh
source "$ME/lab.sh"
E=/mnt/host/dlm-electd
lab_begin electd

conf() { # conf NAME ALLOW: a config in the share
    cat >"$CACHE/share/$1.toml" <<EOF
[lock]
backend = "dlm"
lockspace = "electd"
allow_unfenced = $2
[daemon]
poll_interval = "250ms"
runtime_dir = "/run/dlm-electd"
[[resource]]
name = "web"
[[resource.action]]
type = "exec"
acquire = ["/bin/sh", "-c", "echo acquire >> /tmp/events.log"]
release = ["/bin/sh", "-c", "echo release >> /tmp/events.log"]
EOF
    chmod 0644 "$CACHE/share/$1.toml"
}
conf strict false
conf unfenced true
C=/mnt/host/unfenced.toml

STATUS="$E status --config $C"
EV=/tmp/events.log
start() { gq "$1" "systemd-run -q --unit=electd -p KillMode=process $E run --config $C" 60; }

boot_lab
g node1 'dlm_tool dump_config | grep -E "enable_fencing|enable_quorum"'

log "1 without lock.allow_unfenced: refused"
out=$(gq node1 "timeout 30 $E run --config /mnt/host/strict.toml 2>&1; echo rc=\$?" 60); echo "$out"
if grep -q 'rc=78' <<<"$out" && grep -q 'allow_unfenced' <<<"$out" && grep -q 'enable_fencing=0' <<<"$out" \
    && [ -z "$(gq node1 'dlm_tool ls 2>/dev/null | grep electd')" ]; then
    pass "1 refused with exit 78, naming lock.allow_unfenced; no lockspace joined"
else failc "1 not refused as expected"; fi

log "2 node1 then node2: one master"
start node1
if until_state node1 master 30; then
    start node2
    if until_state node2 standby 30 && [ "$(state node1)" = master ] && [ "$(last_event node1)" = acquire ]; then
        pass "2 node1 master (its acquire hook ran), node2 standby"
    else failc "2 node1 $(state node1), node2 $(state node2)"; fi
else failc "2 node1 never master: $(gq node1 'journalctl -q -u electd -o cat | tail -20')"; fi

log "3 SIGTERM of node1's daemon: node2 takes over"
t0=$(date +%s.%N)
gq node1 "systemctl kill -s TERM electd" 30
if until_state node2 master 20; then
    t1=$(date +%s.%N)
    rc=$(gq node1 "systemctl show -p ExecMainStatus --value electd" 30)
    if [ "$(last_event node1)" = release ] && [ "$(last_event node2)" = acquire ]; then
        pass "3 node2 master $(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.2f", b-a}') s after the SIGTERM (node1 released, exit status $rc)"
    else failc "3 events node1=$(last_event node1) node2=$(last_event node2)"; fi
else failc "3 node2 $(state node2)"; fi
gq node1 "systemctl reset-failed electd 2>/dev/null; true" 30
start node1
until_state node1 standby 30 || failc "3b node1 back as $(state node1)"

log "4 SIGKILL of node2's daemon: its lock stays until cleanup"
gq node2 "systemctl kill -s KILL electd; sleep 0.5; systemctl reset-failed electd 2>/dev/null; true" 30
sleep 3  # twelve of node1's polls: it must stay standby all along
s1=$(state node1)
g node2 'dlm_tool lockdebug electd | head -20' 30
if [ "$s1" = standby ]; then
    out=$(gq node2 "$E cleanup --config $C 2>&1; echo rc=\$?" 120); echo "$out"
    if grep -q 'rc=0' <<<"$out" && [ "$(last_event node2)" = release ] && until_state node1 master 20; then
        pass "4 node1 stayed standby for 3 s after the kill; after node2's cleanup (release hook ran) node1 master"
    else failc "4 cleanup: node2 $(last_event node2), node1 $(state node1)"; fi
else failc "4 node1 was $s1 3 s after node2's daemon was killed (the orphan should hold)"; fi

log "5 SIGKILL of node1's daemon and a restart without cleanup: it resumes"
start node2
until_state node2 standby 30 || failc "5 node2 not standby: $(state node2)"
gq node1 "systemctl kill -s KILL electd; sleep 0.5; systemctl reset-failed electd 2>/dev/null; true" 30
sleep 1
start node1
if until_state node1 master 30 && [ "$(state node2)" = standby ]; then
    pass "5 node1 adopted its orphan and is master again; node2 stayed standby"
else failc "5 node1 $(state node1), node2 $(state node2)"; fi

log "6 SIGTERM of node2's waiting standby: it cancels its queued request and exits"
t0=$(date +%s.%N)
gq node2 "systemctl kill -s TERM electd" 30
gone=""
for _ in $(seq 40); do
    if [ "$(gq node2 'systemctl is-active electd' 30)" != active ]; then gone=yes; break; fi
    sleep 0.25
done
t1=$(date +%s.%N)
waiting=$(gq node1 'dlm_tool lockdebug electd | grep -c "^Waiting" || true' 30)
if [ -n "$gone" ] && [ "${waiting:-1}" = 0 ] && [ "$(state node1)" = master ]; then
    pass "6 node2 gone $(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.1f", b-a}') s after the SIGTERM, no request left queued, node1 still master"
else failc "6 node2 gone=${gone:-no}, queued requests on node1's view: $waiting, node1 $(state node1)"; fi
g node1 'dlm_tool lockdebug electd' 30

log "7 both stopped: nothing left"
for n in node1 node2; do gq $n "systemctl stop electd" 60; done
sleep 1
left=""
for n in node1 node2; do
    ls_=$(gq $n 'dlm_tool ls 2>/dev/null | grep -c "^name *electd" || true' 30)
    [ "${ls_:-0}" = 0 ] || left="$left $n"
done
if [ -z "$left" ] && [ "$(last_event node1)" = release ]; then pass "7 both daemons left the lockspace: gone on both nodes; node1's release hook ran"
else failc "7 lockspace still joined on:$left; node1 last event $(last_event node1)"; fi

summary
