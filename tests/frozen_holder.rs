//! A frozen master on the `file` backend (issue 18, docs/dlmfs.md §2.7):
//! an OFD lock belongs to the open file, so a holder that does not run
//! (daemon and keeper SIGSTOPped, as a frozen host would stop them) still
//! holds it, and nobody can be granted it meanwhile: no membership doubt is
//! needed there. Proved with real processes: a waiting standby and a
//! newcomer started during the freeze both stay standby, and the master
//! resumes as master.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::Duration;
use support::assert_never_two_masters;
use support::lab::Lab;

/// SIGCONTs its processes when dropped, so a failed assertion leaves none
/// stopped (the lab then kills them).
struct Frozen(Vec<Pid>);

impl Frozen {
    fn new(pids: Vec<Pid>) -> Frozen {
        for p in &pids {
            kill(*p, Signal::SIGSTOP).unwrap();
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = kill(*p, Signal::SIGCONT);
        }
    }
}

#[test]
fn a_frozen_file_master_keeps_its_lock_and_nobody_acquires_meanwhile() {
    let mut lab = Lab::new();
    let res = lab.logging("web");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let keeper = lab.keeper(a);
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    {
        let _frozen = Frozen::new(vec![lab.daemons[a].pid(), Pid::from_raw(keeper)]);
        // A newcomer decides while the master is frozen.
        let c = lab.start("c", &res);
        lab.daemons[c].wait_state("web", "standby");
        // The freeze goes on: several poll intervals for b and c to try.
        std::thread::sleep(Duration::from_secs(3));
        for i in [b, c] {
            assert_eq!(lab.daemons[i].state("web").as_deref(), Some("standby"));
        }
    }
    lab.daemons[a].wait_state("web", "master");
    let ev = lab.events();
    assert_eq!(ev, vec!["a acquire web".to_string()], "{ev:?}");
    assert_never_two_masters(&ev);
}
