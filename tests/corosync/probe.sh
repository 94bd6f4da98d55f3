#!/bin/bash
# probe.sh — the lock::dlm binding (tests/corosync/dlmprobe, static) on two
# Debian 12 VMs running corosync + dlm_controld: the fsdlm-lab of
# /work/shared/fsdlm-lab (its README; its image must be built first:
# CACHE=/var/tmp/fsdlm-lab/cache build-image.sh). Boots two fresh VMs,
# runs the checks below across them, prints PASS/FAIL per check and what
# was observed, stops the VMs (KEEP=1 leaves them running).
#
#   1 node1 trylocks EX: granted (and the lockspace join time)
#   2 node2 trylocks while node1 holds: busy
#   3 node2 trylocks with NOQUEUEBAST: busy, and node1 receives a BAST
#   4 node2 queues: WAITING; node1 (a fresh holder) receives a BAST;
#     node1's holder is stopped (process exit closes its fd): node2 granted
#   5 node2 queues behind a holder that unlocks explicitly after 4 s:
#     granted after the unlock
#   6 node2 queues and cancels after 2 s: CANCELLED, node1 still holds
#   7 node1's holder forks a keeper and exits without unlocking: node2 is
#     still busy; the keeper is killed: node2 granted
#   8 node1 holds PERSISTENT and is killed (SIGKILL): node2 still busy (an
#     orphan); node1 adopts the orphan and unlocks it: node2 granted
#   9 node1 holds RES on one fd and RES2 on a second open of the device,
#     then closes the first: node2 gets RES, RES2 stays busy
#
# Environment: LAB (the lab's dir), CACHE (its cache), CARGO_TARGET_DIR
# (where dlmprobe is built), KEEP=1. Needs root, qemu; no network but the
# lab's private link between the two VMs.
set -uo pipefail
ME=$(cd "$(dirname "$0")" && pwd)
LAB=${LAB:-/work/shared/fsdlm-lab}
export CACHE=${CACHE:-/var/tmp/fsdlm-lab/cache}
HERE=$LAB
# shellcheck source=/dev/null
source "$LAB/lib.sh"
# shellcheck source=lab.sh
source "$ME/lab.sh"
LS=${LS:-electd}
RES=${RES:-master}
P=/mnt/host/dlmprobe
TARGET_DIR=${CARGO_TARGET_DIR:-$ME/dlmprobe/target}
BIN=$TARGET_DIR/x86_64-unknown-linux-gnu/release/dlmprobe

[ -f "$CACHE/base.raw" ] || { echo "no lab image in $CACHE (run $LAB/build-image.sh)" >&2; exit 2; }
# Everything also goes to a log beside the lab's cache (never into the repo).
LOGF=${LOGF:-$CACHE/probe-$(date -u +%Y%m%dT%H%M%SZ).log}
exec > >(tee -a "$LOGF") 2>&1
echo "probe.sh $(date -u +%FT%TZ), log $LOGF"

log "build dlmprobe (static)"
(cd "$ME/dlmprobe" && CARGO_TARGET_DIR=$TARGET_DIR RUSTFLAGS="-C target-feature=+crt-static" \
    nice -n 19 cargo build -q --release --target x86_64-unknown-linux-gnu) || exit 2
file "$BIN"
mkdir -p "$CACHE/share" && install -m 0755 "$BIN" "$CACHE/share/dlmprobe"

RESULTS=()
pass() { RESULTS+=("PASS $*"); echo "PASS $*"; }
failc() { RESULTS+=("FAIL $*"); echo "FAIL $*"; }
# jr NODE UNIT: the unit's output
jr() { gq "$1" "journalctl -q -u $2 -o cat" 60; }
# wait_for NODE UNIT PATTERN SECS: until the unit's output matches (0) or not (1)
wait_for() {
    local i
    for i in $(seq $(( $4 * 2 ))); do
        gq "$1" "journalctl -q -u $2 -o cat | grep -q '$3'" 30 && return 0
        sleep 0.5
    done
    return 1
}
# hold NODE UNIT [OPTS]: a holder in the background (holding until stopped
# unless OPTS say --hold), waited for until granted
hold() {
    local n=$1 u=$2; shift 2
    gq "$n" "systemd-run -q --unit=$u $P --hold forever $* $LS $RES" 60
    wait_for "$n" "$u" GRANTED 60
}
# try NODE [OPTS]: a trylock in the foreground; echoes its output, returns its exit code
try() {
    local n=$1; shift
    g "$n" "$P $* $LS $RES"
}

boot_lab
g node1 'uname -r; dlm_tool status | head -3; cat /etc/dlm/dlm.conf; ls -l /dev/misc/ /dev/dlm* 2>&1 | head'

log "1 node1 trylock EX (joins the lockspace), held until stopped"
if hold node1 h1; then pass "1 node1 granted: $(jr node1 h1 | grep -E 'JOINED|GRANTED' | tr '\n' ' ')"
else failc "1 node1 not granted: $(jr node1 h1)"; fi
g node1 "dlm_tool ls; ls -l /dev/misc/ | grep dlm; cat /proc/misc | grep dlm"

log "2 node2 trylock while node1 holds"
out=$(try node2); rc=$?; echo "$out"
if [ $rc = 1 ] && grep -q BUSY <<<"$out"; then pass "2 node2 busy"; else failc "2 node2 rc=$rc"; fi

log "3 node2 trylock with NOQUEUEBAST: node1's holder gets a BAST"
out=$(try node2 --noqueuebast); rc=$?; echo "$out"
if [ $rc = 1 ] && wait_for node1 h1 'BAST .*mode=EX' 5; then pass "3 busy, holder got: $(jr node1 h1 | grep BAST | tr '\n' ' ')"
else failc "3 rc=$rc, holder log: $(jr node1 h1)"; fi
log "3b node2 queues and cancels at once: does the holder get a second BAST? (one per grant: lkb_highbast)"
out=$(try node2 --wait --cancel-after 1); echo "$out"
sleep 1; echo "observed: holder BASTs now $(jr node1 h1 | grep -c BAST)"
g node1 'systemctl stop h1; journalctl -q -u h1 -o cat'

log "4 node2 queues; node1 (fresh holder) gets a BAST; node1's holder exits: node2 granted"
hold node1 h4 || failc "4 node1 not granted"
g node2 "systemd-run -q --unit=w4 $P --wait --hold 1 $LS $RES"
if wait_for node2 w4 WAITING 10 && wait_for node1 h4 'BAST .*mode=EX' 10; then
    g node1 'systemctl stop h4; echo "stopped at $(date +%T.%N | cut -c1-12)"'
    if wait_for node2 w4 GRANTED 15; then pass "4 waiter granted after the holder's exit: $(jr node2 w4 | tr '\n' ' ')"
    else failc "4 waiter not granted: $(jr node2 w4)"; fi
else failc "4 no WAITING or no BAST: node2 $(jr node2 w4) / node1 $(jr node1 h4)"; fi
wait_for node2 w4 LEFT 10; jr node2 w4

log "5 node2 queues behind a holder that unlocks explicitly after 4 s"
hold node1 h5 --hold 4 || failc "5 node1 not granted"
g node2 "systemd-run -q --unit=w5 $P --wait $LS $RES"
if wait_for node2 w5 GRANTED 15 && wait_for node1 h5 UNLOCKED 5; then
    pass "5 holder: $(jr node1 h5 | grep -E 'UNLOCKED' | tr '\n' ' ') waiter: $(jr node2 w5 | grep -E 'WAITING|GRANTED' | tr '\n' ' ')"
else failc "5 node1 $(jr node1 h5) / node2 $(jr node2 w5)"; fi

log "6 node2 queues and cancels after 2 s"
hold node1 h6 || failc "6 node1 not granted"
out=$(try node2 --wait --cancel-after 2); rc=$?; echo "$out"
if [ $rc = 3 ] && grep -q CANCELLED <<<"$out"; then
    out2=$(try node2); rc2=$?
    if [ $rc2 = 1 ]; then pass "6 cancelled, node1 still holds"; else failc "6 cancelled but then rc=$rc2: $out2"; fi
else failc "6 rc=$rc"; fi
g node1 'systemctl stop h6'

log "7 a keeper process keeps node1's lock after the holder exits without unlocking"
gq node1 "systemd-run -q --unit=k7 -p KillMode=process $P --keeper $LS $RES" 60
if wait_for node1 k7 KEEPER 20; then
    jr node1 k7
    kpid=$(jr node1 k7 | sed -n 's/.*KEEPER pid=\([0-9]*\).*/\1/p' | head -1)
    out=$(try node2); rc=$?; echo "$out"
    if [ $rc = 1 ]; then
        g node1 "kill $kpid; sleep 0.5; ps -p $kpid || echo keeper gone"
        out=$(try node2); rc=$?; echo "$out"
        if [ $rc = 0 ]; then pass "7 busy while the keeper lived, granted once it was killed"
        else failc "7 still rc=$rc after the keeper was killed"; fi
    else failc "7 node2 rc=$rc while the keeper lives (the lock went with the parent?)"; fi
else failc "7 no keeper: $(jr node1 k7)"; fi

log "8 PERSISTENT: node1's holder is SIGKILLed; its lock stays an orphan until adopted"
hold node1 h8 --persistent || failc "8 node1 not granted"
g node1 'systemctl kill -s KILL h8; sleep 1; systemctl is-active h8; dlm_tool lockdebug '"$LS"' | head -20'
out=$(try node2); rc=$?; echo "$out"
if [ $rc = 1 ]; then
    out=$(try node1 --adopt); arc=$?; echo "$out"
    out2=$(try node2); rc2=$?; echo "$out2"
    if [ $arc = 0 ] && [ $rc2 = 0 ]; then pass "8 orphan kept the lock; adopted and unlocked on node1; node2 granted"
    else failc "8 adopt rc=$arc, node2 after it rc=$rc2"; fi
else failc "8 node2 rc=$rc after the persistent holder died (expected busy: orphan)"; fi
try node1 --purge >/dev/null || true

log "9 one lockspace fd per lock: closing the first fd frees only its lock"
gq node1 "systemd-run -q --unit=h9 $P --hold forever --second-fd ${RES}2 $LS $RES" 60
if wait_for node1 h9 CLOSED-FIRST 30; then
    jr node1 h9
    out=$(try node2); rc=$?; echo "$out"
    out2=$(g node2 "$P $LS ${RES}2"); rc2=$?; echo "$out2"
    if [ $rc = 0 ] && [ $rc2 = 1 ]; then pass "9 $RES free after its fd closed, ${RES}2 still held through the second fd"
    else failc "9 $RES rc=$rc (want 0), ${RES}2 rc=$rc2 (want 1)"; fi
else failc "9 no second fd: $(jr node1 h9)"; fi
g node1 'systemctl stop h9'

log "lockspaces left (each probe gives its create back; the killed ones did not)"
for n in node1 node2; do g $n "dlm_tool ls | head -20; dlm_tool leave $LS 2>&1 | tail -2" 60 || true; done

log "summary ($(date -u +%FT%TZ))"
printf '%s\n' "${RESULTS[@]}"
! printf '%s\n' "${RESULTS[@]}" | grep -q '^FAIL'
