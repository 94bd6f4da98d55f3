//! The open-file limit: one fd per lock held, waited for or polled (and per device
//! open on the dlm backend), so a daemon with a thousand resources needs
//! more than the soft limit of 1,024 that a login shell or systemd gives.
//! Run by hand, the daemon raises its soft limit to the hard one itself.
//! Its hooks inherit the raised limit: putting the old one back between
//! fork and exec fails the exec (EMFILE) while the child still has the
//! daemon's fds, which close only at the exec; a hook that uses select(2)
//! on an fd above 1,023 is the price, as with any service's `LimitNOFILE=`.
//! Under the shipped unit the system call filter denies setrlimit(2)
//! (`@resources`), so the unit sets the limit (`LimitNOFILE=`), and the
//! call here fails quietly.

/// Raises the soft RLIMIT_NOFILE to the hard limit; `(before, after)` if
/// it changed. Call early in `run`.
pub fn raise() -> Option<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid resource and a pointer to an rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 || r.rlim_cur >= r.rlim_max {
        return None;
    }
    let before = r.rlim_cur;
    r.rlim_cur = r.rlim_max;
    // SAFETY: as above; raising the soft limit up to the hard one needs no
    // privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return None;
    }
    Some((before, r.rlim_max))
}
