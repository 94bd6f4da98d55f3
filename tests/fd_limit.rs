//! The open-file limit (src/fdlimit.rs): systemd gives a service a soft
//! limit of 1,024 open files, and the daemon needs one fd per lock held or
//! waited for. Here the soft limit is 200 (prlimit) and the daemon has 260
//! resources on the `file` backend: with the limit as found it ran out of
//! fds; it raises its own soft limit to the hard one (4096 here), and its
//! hooks inherit that.

mod support;

use std::fs;
use std::time::Duration;
use support::lab::{Lab, exec_resource};
use support::wait_for;

#[test]
fn more_resources_than_the_soft_fd_limit_all_become_master() {
    let mut lab = Lab::new();
    let mut res = String::new();
    for i in 0..260 {
        res += &format!("[[resource]]\nname = \"r{i:03}\"\n");
    }
    let seen = lab.path("hook-limit");
    res += &exec_resource(
        "probe",
        &format!(r#"["/bin/sh", "-c", "ulimit -Sn > {}"]"#, seen.display()),
        r#"["/bin/true"]"#,
    );
    let d = lab.start_under("a", &["prlimit", "--nofile=200:4096"], &res);
    let masters = || {
        let st = lab.daemons[d].status()?;
        let n = st["resources"]
            .as_array()?
            .iter()
            .filter(|r| r["state"] == "master")
            .count();
        Some(n)
    };
    wait_for(Duration::from_secs(60), "all 261 resources master", || {
        (masters() == Some(261)).then_some(())
    });
    assert!(
        !lab.daemons[d].log().contains("Too many open files"),
        "{}",
        lab.daemons[d].log()
    );
    // The hook ran, with the raised limit.
    assert_eq!(fs::read_to_string(&seen).unwrap().trim(), "4096");
}
