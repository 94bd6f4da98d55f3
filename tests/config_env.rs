//! `[[resource]] env` (issue #19, item 18) through a real daemon: the
//! variables reach that resource's hooks (acquire and release) and its
//! health check, on top of the minimal environment, and no other
//! resource's.

mod support;

use std::fs;
use std::path::Path;
use support::env_dump;
use support::lab::Lab;

/// An exec action dumping its environment to `DIR/NAME.EVENT.env`.
fn dumping(name: &str, dir: &Path, env: &str) -> String {
    let dump = |event: &str| {
        format!(
            "[\"/bin/sh\", \"-c\", \"env > {0}/{name}.{event}.tmp && mv {0}/{name}.{event}.tmp {0}/{name}.{event}.env\"]",
            dir.display()
        )
    };
    format!(
        "[[resource]]\nname = \"{name}\"\n{env}[[resource.action]]\ntype = \"exec\"\nacquire = {}\nrelease = {}\n[resource.check]\nexec = {}\ninterval = \"100ms\"\n",
        dump("acquire"),
        dump("release"),
        dump("check"),
    )
}

#[test]
fn resource_env_reaches_its_hooks_and_check_only() {
    let mut lab = Lab::new();
    let dir = lab.path("dumps");
    fs::create_dir_all(&dir).unwrap();
    let res = format!(
        "{}{}",
        dumping(
            "web",
            &dir,
            "env = { HOME = \"/var/lib/web\", GREETING = \"hello, world\" }\n"
        ),
        dumping("db", &dir, ""),
    );
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    lab.daemons[a].wait_state("db", "master");
    support::wait_for(support::WAIT, "the checks' env dumps", || {
        (dir.join("web.check.env").exists() && dir.join("db.check.env").exists()).then_some(())
    });
    lab.daemons[a].stop();
    for event in ["acquire", "check", "release"] {
        let web = env_dump(&dir.join(format!("web.{event}.env")));
        assert_eq!(
            web.get("HOME").map(String::as_str),
            Some("/var/lib/web"),
            "{event}: {web:?}"
        );
        assert_eq!(
            web.get("GREETING").map(String::as_str),
            Some("hello, world"),
            "{event}: {web:?}"
        );
        // The minimal environment is still there, and ours wins.
        assert_eq!(
            web.get("DLM_ELECTD_RESOURCE").map(String::as_str),
            Some("web")
        );
        assert_eq!(web.get("DLM_ELECTD_EVENT").map(String::as_str), Some(event));
        assert_eq!(
            web.get("PATH").map(String::as_str),
            Some(dlm_electd::action::exec::HOOK_PATH)
        );
        let db = env_dump(&dir.join(format!("db.{event}.env")));
        assert_eq!(
            db.get("DLM_ELECTD_RESOURCE").map(String::as_str),
            Some("db")
        );
        assert!(
            !db.contains_key("GREETING")
                && db.get("HOME").map(String::as_str) != Some("/var/lib/web"),
            "{event}: web's env reached db: {db:?}"
        );
    }
}

/// A reserved or malformed name is refused at its place, like any key.
#[test]
fn a_bad_env_name_is_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::write_config(
        dir.path(),
        "a",
        &dir.path().join("locks"),
        "[[resource]]\nname = \"w\"\nenv = { DLM_ELECTD_NODE = \"b\" }\n",
    );
    let out = support::cli(&cfg, &["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "{}:11:9: key `env`: DLM_ELECTD_NODE is reserved: dlm-electd sets the DLM_ELECTD_* variables itself",
            cfg.display()
        )
    );
}
