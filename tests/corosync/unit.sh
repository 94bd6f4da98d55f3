#!/bin/bash
# unit.sh — the dlm backend under the shipped systemd unit (issue #22) on the
# fsdlm-lab's two corosync VMs: the unit and drop-in as the packages install
# them, the static binary as /usr/sbin/dlm-electd. The lab's dlm.conf has
# enable_fencing=0, so the config sets lock.allow_unfenced.
#
#   U1 the unit alone (its sandbox: no CAP_SYS_ADMIN, a private /dev):
#      `systemctl start` fails in ExecStartPre (check-config), exit 78,
#      the journal names lock.backend and the dlm.conf.example drop-in;
#      no lockspace joined
#   U2 with the drop-in: node1 started first is master, node2 standby
#      (the quorum watch's corosync-quorumtool works in the sandbox)
#   U3 systemctl stop on node1: it releases (its release hook ran), node2
#      master
#   U3b node1 left its lockspace although it masters the DLM resource of
#      the lock node2 now holds (a plain remove is refused then; the daemon
#      forces when none of its own locks is left); node2 stays master, and
#      node1 started again is standby
#   U4 both stopped: no lockspace left on either node
#
# Hooks append to /var/lib/dlm-electd/events.log (the unit's StateDirectory:
# /tmp is private to the service, the rest of the system read-only).
# Environment: LAB, CACHE, KEEP=1, BIN (as electd.sh).
set -uo pipefail
ME=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab.sh
source "$ME/lab.sh"
lab_begin unit
S=$CACHE/share
install -m 0644 "$REPO/systemd/dlm-electd.service" "$S/dlm-electd.service"
install -m 0644 "$REPO/systemd/dlm.conf.example" "$S/dlm.conf.example"
EV=/var/lib/dlm-electd/events.log
cat >"$S/unit.toml" <<EOF
[lock]
backend = "dlm"
lockspace = "electd"
allow_unfenced = true
[daemon]
poll_interval = "250ms"
[[resource]]
name = "web"
[[resource.action]]
type = "exec"
acquire = ["/bin/sh", "-c", "echo acquire >> $EV"]
release = ["/bin/sh", "-c", "echo release >> $EV"]
EOF
chmod 0644 "$S/unit.toml"

STATUS="dlm-electd status"
lockspaces() { gq "$1" 'dlm_tool ls 2>/dev/null | grep -c "^name *electd" || true' 30; }

boot_lab
for n in node1 node2; do
    gq $n "install -m 0755 /mnt/host/dlm-electd /usr/sbin/dlm-electd && \
        install -m 0644 /mnt/host/dlm-electd.service /etc/systemd/system/dlm-electd.service && \
        install -d -m 0755 /etc/dlm-electd && install -m 0644 /mnt/host/unit.toml /etc/dlm-electd/dlm-electd.toml && \
        systemctl daemon-reload && systemctl --version | head -1" 120
done

log "U1 the unit alone: refused in ExecStartPre, naming the drop-in"
since=$(gq node1 'date +%s' 30)
gq node1 "systemctl start dlm-electd" 120; rc=$?
j=$(gq node1 "journalctl -q -u dlm-electd -o cat --since=@$since" 60); echo "$j"
if [ "$rc" != 0 ] && grep -q "key \`lock.backend\`: the dlm backend needs CAP_SYS_ADMIN" <<<"$j" \
    && grep -q 'examples/dlm.conf.example' <<<"$j" && [ "$(lockspaces node1)" = 0 ]; then
    pass "U1 start failed (rc $rc), the journal names lock.backend and the drop-in; no lockspace joined"
else failc "U1 rc=$rc, lockspaces $(lockspaces node1)"; fi
# Restart=on-failure would try again (a restart is pending): end it.
gq node1 "systemctl stop dlm-electd; systemctl reset-failed dlm-electd; true" 60

log "U2 with the drop-in: one master"
for n in node1 node2; do
    gq $n "mkdir -p /etc/systemd/system/dlm-electd.service.d && \
        install -m 0644 /mnt/host/dlm.conf.example /etc/systemd/system/dlm-electd.service.d/dlm.conf && \
        systemctl daemon-reload" 60
done
gq node1 "systemctl start dlm-electd" 300
if until_state node1 master 60; then
    gq node2 "systemctl start dlm-electd" 300
    if until_state node2 standby 30 && [ "$(state node1)" = master ] && [ "$(last_event node1)" = acquire ]; then
        pass "U2 node1 master under the unit (its acquire hook ran), node2 standby"
    else failc "U2 node1 $(state node1), node2 $(state node2)"; fi
else failc "U2 node1 never master: $(gq node1 'systemctl status --no-pager dlm-electd; journalctl -q -u dlm-electd -o cat | tail -20')"; fi

log "U3 systemctl stop on node1: node2 takes over"
t0=$(date +%s.%N)
gq node1 "systemctl stop dlm-electd" 120
if until_state node2 master 30 && [ "$(last_event node1)" = release ] && [ "$(last_event node2)" = acquire ]; then
    pass "U3 node2 master $(awk -v a=$t0 -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s after the stop began; node1 released"
else failc "U3 node2 $(state node2), events node1=$(last_event node1) node2=$(last_event node2)"; fi

log "U3b node1 left its lockspace, though it masters the lock node2 now holds; node2's lock survived"
# A plain remove is refused while this node keeps the copy of another
# node's lock (fs/dlm/user.c: plain or FORCEFREE): the daemon then forces.
if [ "$(lockspaces node1)" = 0 ] && [ "$(state node2)" = master ]; then
    gq node1 "systemctl start dlm-electd" 300
    if until_state node1 standby 30 && [ "$(state node2)" = master ]; then
        pass "U3b node1's lockspace gone after its stop, node2 still master; node1 started again is standby (node2's lock held through the remastering)"
    else failc "U3b after node1's restart: node1 $(state node1), node2 $(state node2)"; fi
else failc "U3b node1 lockspaces $(lockspaces node1), node2 $(state node2): $(gq node1 'journalctl -q -u dlm-electd -o cat | tail -5')"; fi
gq node1 "systemctl stop dlm-electd" 120

log "U4 both stopped: nothing left"
gq node2 "systemctl stop dlm-electd" 120
left=""
for n in node1 node2; do [ "$(lockspaces $n)" = 0 ] || left="$left $n"; done
if [ -z "$left" ] && [ "$(last_event node2)" = release ]; then pass "U4 no lockspace left on either node; node2's release hook ran"
else failc "U4 lockspace still joined on:$left; node2 last event $(last_event node2)"; fi
for n in node1 node2; do g $n "journalctl -q -u dlm-electd -o cat | tail -8" 30; done

summary
