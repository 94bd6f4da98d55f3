# lab.sh — shared by the scripts here (source it after the lab's lib.sh):
# two fresh fsdlm-lab VMs, stopped again on exit (KEEP=1 leaves them).

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
