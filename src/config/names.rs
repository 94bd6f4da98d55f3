//! Name rules: predicates on the names, paths and addresses a config
//! gives (units, locks, domains, resources, interfaces, programs, VIPs,
//! the metrics address). Pure; each says why a value is refused, for
//! `validate` to place at its key.

use crate::lock::Backend;
use std::net::IpAddr;

/// The unit types a start job makes sense for (not `.device`, `.scope`).
pub const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "target",
    "mount",
    "automount",
    "swap",
    "path",
    "timer",
    "slice",
];

/// Why `name` cannot be a unit action's unit, or None: a full unit name
/// (systemd does not guess the type over D-Bus), not a path, at most 255
/// bytes, and an instance rather than a template.
pub fn unit_name_problem(name: &str) -> Option<String> {
    if name.len() > 255 {
        return Some(format!(
            "unit names are at most 255 bytes, this one has {}",
            name.len()
        ));
    }
    if name.contains('/') {
        return Some(format!(
            "{name:?} is a path: write the unit's name, like \"nginx.service\""
        ));
    }
    let Some((stem, _)) = name
        .rsplit_once('.')
        .filter(|(_, s)| UNIT_SUFFIXES.contains(s))
    else {
        return Some(format!(
            "{name:?} does not end in the type of a unit that can be started: write the full name, like \"nginx.service\" (.{})",
            UNIT_SUFFIXES.join(" .")
        ));
    };
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c))
    {
        return Some(format!(
            "{name:?}: unit names are made of A-Z a-z 0-9 and : - _ . @ \\"
        ));
    }
    if let Some((prefix, instance)) = stem.split_once('@')
        && (prefix.is_empty() || instance.is_empty())
    {
        return Some(format!(
            "{name:?} is a template or has no name before '@': name an instance, like \"getty@tty1.service\""
        ));
    }
    None
}

/// Why a lock name cannot be used with a backend, or None if it can.
pub fn lock_name_problem(backend: Backend, name: &str) -> Option<String> {
    if name.contains('/') || name.contains('\0') {
        return Some("must not contain '/' or NUL".into());
    }
    if name.starts_with(crate::lock::WORKLOAD_PREFIX) {
        return Some(format!(
            "must not start with '{}' (reserved for workload locks, `dlm-electd run-locked`)",
            crate::lock::WORKLOAD_PREFIX
        ));
    }
    match backend {
        Backend::Dlmfs if name.is_empty() || name.len() > 31 => Some(format!(
            "dlmfs lock names are 1 to 31 bytes, {:?} has {}",
            name,
            name.len()
        )),
        Backend::Dlmfs if name.starts_with('$') => {
            Some("dlmfs lock names must not start with '$' (reserved by the DLM)".into())
        }
        Backend::File if name.is_empty() || name.len() > 250 => Some(format!(
            "lock names are 1 to 250 bytes, {:?} has {}",
            name,
            name.len()
        )),
        Backend::File if name.starts_with('.') => Some("must not start with '.'".into()),
        Backend::Dlm if name.is_empty() || name.len() > 64 => Some(format!(
            "dlm resource names are 1 to 64 bytes, {:?} has {}",
            name,
            name.len()
        )),
        _ => None,
    }
}

/// Why a dlmfs domain name cannot be used, or None if it can.
pub fn domain_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 63 {
        return Some(format!(
            "dlmfs domain names are 1 to 63 bytes, {:?} has {}",
            name,
            name.len()
        ));
    }
    if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Some("must be a plain directory name".into());
    }
    // OCFS2 volumes use their 32-hex-digit UUID as DLM domain; sharing one
    // would tie us to that volume's heartbeat region (docs/dlmfs.md §1.6).
    if name.len() == 32 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(
            "must not be a 32-hex-digit string (that is how OCFS2 volumes name their domains)"
                .into(),
        );
    }
    None
}

/// Why `name` cannot name a variable of a resource's `env`, or None.
pub fn env_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Some(format!(
            "{name:?} is not a variable name: letters A-Z a-z, digits and _, not starting with a digit"
        ));
    }
    // The daemon sets DLM_ELECTD_RESOURCE, _EVENT and _NODE per run; a
    // config must not be able to make a hook believe another resource or
    // event, and the prefix stays free for more of ours.
    name.starts_with("DLM_ELECTD_")
        .then(|| format!("{name} is reserved: dlm-electd sets the DLM_ELECTD_* variables itself"))
}

pub fn resource_name_problem(name: &str) -> Option<String> {
    // The name also names the resource's applied record file in the
    // runtime dir, so it must be a plain file name.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    (!ok).then(|| {
        "resource names are 1 to 64 characters from A-Z a-z 0-9 - _ . : @, and not . or ..".into()
    })
}

/// A node's name (`[node] name`, `prefer`, `[cluster] nodes`): it is
/// only compared, so anything printable fits.
pub fn node_name_problem(name: &str) -> Option<String> {
    let bad = name.is_empty()
        || name.len() > 64
        || name.chars().any(|c| c.is_whitespace() || c.is_control());
    bad.then(|| "node names are 1 to 64 characters without spaces".into())
}

pub fn interface_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    (!ok).then(|| "interface names are 1 to 15 bytes without '/', ':' or spaces".into())
}

/// Parses "ADDR/PREFIX" (or a bare address, meaning a host route).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), AddressError> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| AddressError::NotAnAddress(addr.to_string()))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Err(AddressError::Prefix(p.to_string(), max)),
        },
    };
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return Err(AddressError::NotVirtual(addr));
    }
    Ok((addr, prefix))
}

/// `metrics.listen`: an IP address and a port, nothing looked up. A host
/// name could resolve to more than one address, or to another one after a
/// DNS change, and the endpoint must listen exactly where it is written.
/// Port 0 would pick a random port no scraper could find.
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, AddressError> {
    let addr: std::net::SocketAddr = s
        .parse()
        .map_err(|_| AddressError::NotListen(s.to_string()))?;
    if addr.port() == 0 {
        return Err(AddressError::PortZero(s.to_string()));
    }
    Ok(addr)
}

/// Why a VIP (`address`) or `metrics.listen` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    NotAnAddress(String),
    #[error("prefix length {0:?} is not between 1 and {1}")]
    Prefix(String, u8),
    #[error("{0} cannot be a virtual IP (unspecified, multicast or loopback)")]
    NotVirtual(IpAddr),
    #[error("{0:?} is not an IP address and port: write e.g. \"127.0.0.1:9477\" or \"[::1]:9477\"")]
    NotListen(String),
    #[error("{0:?}: port 0 would pick a random port; give the one Prometheus scrapes, e.g. 9477")]
    PortZero(String),
}

/// Why a program path cannot be used, or None. A relative path with a `/`
/// would be looked up from the daemon's working directory, which differs
/// between a unit and a shell; a bare name is looked up in PATH, like exec.
pub fn program_problem(prog: &str) -> Option<String> {
    (prog.contains('/') && !prog.starts_with('/')).then(|| {
        format!(
            "{prog:?} is a relative path: write an absolute path, or a bare name to look up in PATH"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        for ok in [
            "nginx.service",
            "getty@tty1.service",
            "a-b_c.d:e.timer",
            "var-lib\\x2dx.mount",
            "multi-user.target",
        ] {
            assert_eq!(unit_name_problem(ok), None, "{ok}");
        }
        let long = format!("{}.service", "a".repeat(248));
        assert_eq!(long.len(), 256);
        assert_eq!(unit_name_problem(&long[1..]), None, "255 bytes");
        for (bad, why) in [
            ("nginx", "does not end in the type"),
            ("nginx.serv", "does not end in the type"),
            ("sda.device", "does not end in the type"),
            ("session-1.scope", "does not end in the type"),
            ("/etc/systemd/system/nginx.service", "is a path"),
            ("../nginx.service", "is a path"),
            (".service", "made of"),
            ("a b.service", "made of"),
            ("a$b.service", "made of"),
            ("getty@.service", "template"),
            ("@tty1.service", "template"),
            (long.as_str(), "at most 255 bytes"),
        ] {
            let p = unit_name_problem(bad).unwrap_or_else(|| panic!("accepted {bad:?}"));
            assert!(p.contains(why), "{bad:?}: {p}");
        }
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    /// The typed errors read as the strings they replaced.
    #[test]
    fn address_errors_read_as_before() {
        let e = |s: &str| parse_cidr(s).unwrap_err().to_string();
        assert_eq!(e("x/24"), "\"x\" is not an IPv4 or IPv6 address");
        assert_eq!(
            e("10.0.0.1/33"),
            "prefix length \"33\" is not between 1 and 32"
        );
        assert_eq!(
            e("127.0.0.1"),
            "127.0.0.1 cannot be a virtual IP (unspecified, multicast or loopback)"
        );
        assert_eq!(parse_cidr("2001:db8::1").unwrap().1, 128);
        assert_eq!(
            parse_listen("h:1").unwrap_err().to_string(),
            "\"h:1\" is not an IP address and port: write e.g. \"127.0.0.1:9477\" or \"[::1]:9477\""
        );
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap_err().to_string(),
            "\"127.0.0.1:0\": port 0 would pick a random port; give the one Prometheus scrapes, e.g. 9477"
        );
    }
}
