//! Validation tests of the `[lock]` keys that belong to one backend (the
//! dlm backend's, dlmfs's panic_on_oops warning); beside validate_tests.rs,
//! which would grow past the size bound.

use super::validate_tests::{errors, validate_text};

#[test]
fn dlmfs_without_panic_on_oops_is_a_warning_at_the_backend_key() {
    use super::check::oops_warning;
    let text = "[lock]\nbackend = \"dlmfs\"\n[[resource]]\nname = \"a\"\n";
    let (cfg, places) = validate_text(text).unwrap();
    let w = oops_warning(&cfg, &places, Some("0\n"))
        .unwrap()
        .to_string();
    assert!(
        w.starts_with("/etc/x.toml:2:11: key `lock.backend`: kernel.panic_on_oops is 0"),
        "{w}"
    );
    assert!(oops_warning(&cfg, &places, Some("1\n")).is_none());
    assert!(
        oops_warning(&cfg, &places, None).is_none(),
        "unreadable: nothing said"
    );
    let (cfg, places) = validate_text("[[resource]]\nname = \"a\"\n").unwrap();
    assert!(
        oops_warning(&cfg, &places, Some("0\n")).is_none(),
        "the file backend"
    );
}

#[test]
fn the_dlm_backend_has_a_lockspace_waits_and_refuses_long_names() {
    let (cfg, _) =
        validate_text("[lock]\nbackend = \"dlm\"\n[[resource]]\nname = \"a\"\n").unwrap();
    assert_eq!(cfg.lock.lockspace, "dlm-electd");
    assert!(!cfg.lock.allow_unfenced);
    assert_eq!(cfg.lock.standby, crate::lock::Standby::Wait);
    let (cfg, _) = validate_text(
        "[lock]\nbackend = \"dlm\"\nlockspace = \"web\"\nallow_unfenced = true\n[[resource]]\nname = \"a\"\n",
    )
    .unwrap();
    assert_eq!(
        (cfg.lock.lockspace.as_str(), cfg.lock.allow_unfenced),
        ("web", true)
    );
    let e = errors("[lock]\nbackend = \"dlm\"\nlockspace = \"plock\"\n");
    assert!(
        e[0].starts_with("/etc/x.toml:3:13: key `lockspace`"),
        "{e:?}"
    );
    let (cfg, _) = validate_text("[lock]\nbackend = \"dlm\"\nstandby = \"poll\"\n").unwrap();
    assert_eq!(cfg.lock.standby, crate::lock::Standby::Poll);
    let long = "x".repeat(65);
    let e = errors(&format!(
        "[lock]\nbackend = \"dlm\"\n[[resource]]\nname = \"{long}\"\n"
    ));
    assert!(
        e.iter()
            .any(|e| e.contains("dlm resource names are 1 to 64 bytes")),
        "{e:?}"
    );
}

#[test]
fn the_dlm_backend_without_cap_sys_admin_is_an_error_naming_the_drop_in() {
    use super::check::{bounding_set, sandbox_error};
    let text = "[lock]\nbackend = \"dlm\"\n[[resource]]\nname = \"a\"\n";
    let (cfg, places) = validate_text(text).unwrap();
    // The shipped unit's CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW.
    let unit = bounding_set("Name:\tx\nCapBnd:\t0000000000003000\nCapAmb:\t0\n");
    assert_eq!(unit, Some(0x3000));
    let e = sandbox_error(&cfg, &places, unit).unwrap().to_string();
    assert!(
        e.starts_with("/etc/x.toml:2:11: key `lock.backend`: the dlm backend needs CAP_SYS_ADMIN"),
        "{e}"
    );
    assert!(e.contains("examples/dlm.conf.example"), "{e}");
    // With the drop-in's CAP_SYS_ADMIN added, and outside any sandbox.
    assert!(sandbox_error(&cfg, &places, Some(0x3000 | 1 << 21)).is_none());
    assert!(sandbox_error(&cfg, &places, bounding_set("CapBnd:\t000001ffffffffff\n")).is_none());
    assert!(
        sandbox_error(&cfg, &places, None).is_none(),
        "unreadable: not said"
    );
    let (cfg, places) = validate_text("[[resource]]\nname = \"a\"\n").unwrap();
    assert!(
        sandbox_error(&cfg, &places, unit).is_none(),
        "the file backend"
    );
}
