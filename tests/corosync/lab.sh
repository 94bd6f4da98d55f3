# lab.sh — shared by the scripts here (source it after the lab's lib.sh):
# two fresh fsdlm-lab VMs, stopped again on exit (KEEP=1 leaves them), and
# the checks' results and waits. A script sets STATUS (the `status` command
# as run in a guest) and EV (the event log its hooks append to there).

# Sourced by a script that set ME (its own directory): finds the lab and
# its cache, and the static binary the scripts copy in (BIN).
REPO=${REPO:-$(cd "$ME/../.." && pwd)}
LAB=${LAB:-/work/shared/fsdlm-lab}
export CACHE=${CACHE:-/var/tmp/fsdlm-lab/cache}
HERE=$LAB
# shellcheck source=/dev/null
source "$LAB/lib.sh"
BIN=${BIN:-$REPO/target/x86_64-unknown-linux-gnu/release/dlm-electd}

# lab_begin NAME: refuses without the lab image or the binary, logs to
# $CACHE/NAME-TIME.log too, and puts the binary in the share.
lab_begin() {
    [ -f "$CACHE/base.raw" ] || { echo "no lab image in $CACHE (run $LAB/build-image.sh)" >&2; exit 2; }
    [ -x "$BIN" ] || { echo "no static dlm-electd at $BIN (see README: static build)" >&2; exit 2; }
    LOGF=${LOGF:-$CACHE/$1-$(date -u +%Y%m%dT%H%M%SZ).log}
    exec > >(tee -a "$LOGF") 2>&1
    echo "$1.sh $(date -u +%FT%TZ), log $LOGF"
    mkdir -p "$CACHE/share"
    install -m 0755 "$BIN" "$CACHE/share/dlm-electd"
}

# boot_lab: stops leftovers, boots node1 and node2 from fresh overlays and
# waits until dlm_controld on each sees both members, quorate (at most
# 2 min each). A TERM (say from timeout(1)) still stops the VMs: exit runs
# the EXIT trap.
boot_lab() {
    trap 'exit 130' TERM INT
    [ -n "${KEEP:-}" ] || trap 'stop_vms node1 node2' EXIT
    stop_vms node1 node2 >/dev/null
    log "boot two fresh VMs (corosync + dlm_controld at boot)"
    "$LAB/boot2.sh" || exit 2
    local n
    for n in node1 node2; do
        for _ in $(seq 120); do
            gq $n 'dlm_tool status 2>/dev/null | grep -q "quorate 1" && [ $(dlm_tool status | grep -c "^node .* M ") = 2 ]' 30 && break
            sleep 1
        done
    done
}

RESULTS=()
pass() { RESULTS+=("PASS $*"); echo "PASS $*"; }
failc() { RESULTS+=("FAIL $*"); echo "FAIL $*"; }
# state NODE: web's state per `status` (or "down"); the lab's python3 has
# no json module, so the table's STATE column
state() {
    local s
    s=$(gq "$1" "$STATUS 2>/dev/null | awk '\$1==\"web\" {print \$2}'" 30)
    echo "${s:-down}"
}
# until_state NODE STATE SECS
until_state() {
    local i
    for i in $(seq $(( $3 * 4 ))); do
        [ "$(state "$1")" = "$2" ] && return 0
        sleep 0.25
    done
    return 1
}
last_event() { gq "$1" "tail -n 1 $EV 2>/dev/null" 30; }
# summary: every result; fails if one did
summary() {
    log "summary ($(date -u +%FT%TZ))"
    printf '%s\n' "${RESULTS[@]}"
    ! printf '%s\n' "${RESULTS[@]}" | grep -q '^FAIL'
}
