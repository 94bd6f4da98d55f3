//! Throwaway network namespaces for tests that drive real netlink and raw
//! sockets. Everything a test creates lives in namespaces it owns, so the
//! host's own interfaces are never touched, and the namespaces go away in
//! `Drop`, even when the test panics.
//!
//! Code runs "inside" a namespace on a thread of its own that has called
//! setns(2): the network namespace is per thread, and sockets (netlink
//! included) belong to the namespace of the thread that created them.

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether we can create namespaces at all; tests skip (with a message)
/// rather than fail when not.
pub fn can_run(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping {test}: needs root for network namespaces");
    }
    root
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new, empty namespace named after this process, so concurrent
    /// test binaries and leftovers of killed runs never collide.
    pub fn new(tag: &str) -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("dlmt-{}-{n}-{tag}", std::process::id());
        run_ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// Runs `ip -n <ns> ARGS`, panicking on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// `ip -j addr show dev IFACE`'s `addr_info` entries.
    pub fn addresses(&self, iface: &str) -> Vec<serde_json::Value> {
        let out = self.ip(&["-j", "addr", "show", "dev", iface]);
        let links: Vec<serde_json::Value> = serde_json::from_str(&out).expect("ip -j output");
        links
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The interface's MAC, from `ip -j link`.
    pub fn mac(&self, iface: &str) -> [u8; 6] {
        let out = self.ip(&["-j", "link", "show", "dev", iface]);
        let links: Vec<serde_json::Value> = serde_json::from_str(&out).expect("ip -j output");
        let text = links[0]["address"].as_str().expect("link address");
        let bytes: Vec<u8> = text
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).expect("hex MAC"))
            .collect();
        bytes.try_into().expect("6-byte MAC")
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: plain syscall on a valid fd; affects this thread only.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Runs a future to completion inside this namespace, on a
    /// current-thread runtime so every task stays on the setns'd thread.
    pub fn block_on<F: Future>(&self, f: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send,
    {
        self.enter(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(f())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair, both ends up: `host` holds
/// `HOST_IF` (where the daemon's actions run), `peer` holds `PEER_IF`
/// (where tests watch what reaches the link).
pub struct Veth {
    pub host: Netns,
    pub peer: Netns,
}

pub const HOST_IF: &str = "vip0";
pub const PEER_IF: &str = "peer0";

impl Veth {
    pub fn new() -> Veth {
        let host = Netns::new("h");
        let peer = Netns::new("p");
        host.ip(&[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", PEER_IF, "netns", &peer.name,
        ]);
        host.ip(&["link", "set", HOST_IF, "up"]);
        peer.ip(&["link", "set", PEER_IF, "up"]);
        Veth { host, peer }
    }
}

fn run_ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 from ip")
}
