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
