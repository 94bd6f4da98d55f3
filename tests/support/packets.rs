//! Raw packet sockets (AF_PACKET), for tests that put frames on a link or
//! watch what reaches it. A socket belongs to the network namespace of the
//! thread that opened it: open it inside `Netns::enter`.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const ETH_P_ALL: u16 = 0x0003;
pub const ETH_P_ARP: u16 = 0x0806;

/// A raw socket for EtherType `protocol` (0: none until bound).
pub fn packet_socket(protocol: u16) -> OwnedFd {
    // SAFETY: plain syscall; the fd is owned only once it is known valid.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol.to_be()),
        )
    };
    assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
    // SAFETY: fd was just returned by socket() and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The link-layer address of `iface` for `protocol`, with the broadcast
/// MAC as destination.
pub fn link_addr(iface: &str, protocol: u16) -> libc::sockaddr_ll {
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: name is a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index > 0, "no interface {iface}");
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = protocol.to_be();
    sa.sll_ifindex = index as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    sa
}

/// Binds `fd` to `addr`'s interface and protocol.
pub fn bind(fd: &OwnedFd, addr: &libc::sockaddr_ll) {
    // SAFETY: addr is a live sockaddr_ll and its size is passed with it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
}

/// Sends `frame` whole to `to`; `what` names it in the panic otherwise.
pub fn send(fd: &OwnedFd, frame: &[u8], to: &libc::sockaddr_ll, what: &str) {
    // SAFETY: frame and to are live for the call, with their lengths.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (to as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(
        n,
        frame.len() as isize,
        "sending {what}: {}",
        io::Error::last_os_error()
    );
}

/// Receives one frame into `buf`; None when nothing came (`flags` may say
/// MSG_DONTWAIT, or the socket has a receive timeout) or a signal
/// interrupted the wait.
pub fn recv<'a>(fd: &OwnedFd, buf: &'a mut [u8], flags: i32) -> Option<&'a [u8]> {
    // SAFETY: buf is live and writable for its whole length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        let e = io::Error::last_os_error();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
            "recv: {e}"
        );
        return None;
    }
    Some(&buf[..n as usize])
}
