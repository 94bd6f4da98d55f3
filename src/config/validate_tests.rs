//! The validation tests: raw TOML in, `Config` or placed errors out.
//! In a file of their own so that `validate` and `actions` stay small.

use super::defaults::*;
use super::error::ConfigError;
use super::model::MAX_INTERVAL;
use super::source::Source;
use super::spec::{ActionSpec, CheckSpec, Config, Places, UnitSpec};
use super::validate::validate;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn validate_text(text: &str) -> Result<(Config, Places), Vec<ConfigError>> {
    let src = Source::new("/etc/x.toml".into(), text.into());
    let raw = src.parse().map_err(|e| vec![e])?;
    validate(&src, raw, Vec::new())
}

pub(super) fn errors(text: &str) -> Vec<String> {
    match validate_text(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn metrics_listen_is_off_by_default_and_an_exact_address() {
    let (cfg, _) = validate_text("").unwrap();
    assert_eq!(cfg.metrics.listen, None);
    let (cfg, _) = validate_text("[metrics]\nlisten = \"127.0.0.1:9477\"\n").unwrap();
    assert_eq!(cfg.metrics.listen, Some("127.0.0.1:9477".parse().unwrap()));
    let (cfg, _) = validate_text("[metrics]\nlisten = \"[::1]:9100\"\n").unwrap();
    assert_eq!(cfg.metrics.listen, Some("[::1]:9100".parse().unwrap()));
    for (bad, why) in [
        ("localhost:9477", "is not an IP address and port"),
        ("127.0.0.1", "is not an IP address and port"),
        ("127.0.0.1:0", "port 0 would pick a random port"),
        ("127.0.0.1:99999", "is not an IP address and port"),
    ] {
        let e = errors(&format!(
            "[node]\nname = \"a\"\n[metrics]\nlisten = \"{bad}\"\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/x.toml:4:10: key `metrics.listen`: ") && e[0].contains(why),
            "{bad}: {e:?}"
        );
    }
    let e = errors("[metrics]\nport = 9477\n");
    assert!(e[0].contains("unknown field `port`"), "{e:?}");
}

#[test]
fn relative_paths_are_refused_at_their_key() {
    let e = errors("[lock]\ndir = \"locks\"\nmount = \"dlm\"\n[daemon]\nruntime_dir = \"run\"\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("/etc/x.toml:2:7: key `dir`: \"locks\" is a relative path"));
    assert!(e[1].starts_with("/etc/x.toml:3:9: key `mount`:"));
    assert!(e[2].starts_with("/etc/x.toml:5:15: key `runtime_dir`:"));
    assert!(validate_text("[lock]\ndir = \"/x/locks\"\n").is_ok());
}

#[test]
fn relative_program_paths_are_refused() {
    let e = errors(
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"bin/up\"]\n",
    );
    assert!(
        e[0].starts_with("/etc/x.toml:5:11: key `acquire`: \"bin/up\" is a relative path"),
        "{e:?}"
    );
    // A bare name is looked up in PATH, like exec does.
    assert!(validate_text("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"true\"]\n").is_ok());
}

#[test]
fn places_of_dirs_programs_and_interfaces() {
    let (_, places) = validate_text(
        "[lock]\ndir = \"/l\"\n[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nrelease = [\"/bin/down\", \"x\"]\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.51.100.1\"\ninterface = \"eth9\"\n",
    )
    .unwrap();
    assert_eq!(places.lock_dir.pos, Some((2, 7)));
    assert_eq!(places.runtime_dir.pos, None, "defaulted");
    assert_eq!(places.runtime_dir.path, PathBuf::from("/etc/x.toml"));
    let p = &places.programs[0];
    assert_eq!(
        (p.resource.as_str(), p.key, p.program.as_str(), p.at.pos),
        ("w", "release", "/bin/down", Some((7, 11)))
    );
    assert_eq!(places.interfaces[0].0, "eth9");
    assert_eq!(places.interfaces[0].1.pos, Some((11, 13)));
}

/// Reload restarts the resources whose specs differ: one that only
/// moved in the file must compare equal.
#[test]
fn specs_do_not_depend_on_where_they_were_written() {
    let res = "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/up\"]\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.51.100.1\"\ninterface = \"eth0\"\n";
    let (a, pa) = validate_text(res).unwrap();
    let (b, pb) = validate_text(&format!("\n\n# moved\n{res}")).unwrap();
    assert_eq!(a.resources, b.resources);
    assert_ne!(pa.programs, pb.programs);
}

#[test]
fn vip_defaults_are_the_named_ones() {
    let (c, _) = validate_text("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.51.100.1\"\ninterface = \"eth0\"\n").unwrap();
    let ActionSpec::Vip(v) = &c.resources[0].actions[0] else {
        panic!()
    };
    assert_eq!(
        (v.announce_count, v.announce_interval, v.refresh, v.timeout),
        (
            DEFAULT_ANNOUNCE_COUNT,
            DEFAULT_ANNOUNCE_INTERVAL,
            DEFAULT_VIP_REFRESH,
            DEFAULT_VIP_TIMEOUT
        )
    );
    assert_eq!(
        (v.address.to_string(), v.prefix_len),
        ("198.51.100.1".into(), 32)
    );
}

/// A refresh of centuries used to pass and overflow the runner's clock
/// when the node became master (issue #19, item 3).
#[test]
fn vip_refresh_is_at_most_a_day() {
    let vip = |refresh: &str| {
        format!(
            "{}refresh = \"{refresh}\"\n",
            vip_res("w", "198.51.100.1", "eth0")
        )
    };
    let e = errors(&vip("300000000000years"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("/etc/x.toml:7:11: key `refresh`: at most 24h, not "),
        "{e:?}"
    );
    let e = errors(&vip("25h"));
    assert_eq!(
        e,
        ["/etc/x.toml:7:11: key `refresh`: at most 24h, not 1day 1h"]
    );
    let (c, _) = validate_text(&vip("24h")).unwrap();
    let ActionSpec::Vip(v) = &c.resources[0].actions[0] else {
        panic!()
    };
    assert_eq!(v.refresh, MAX_INTERVAL);
    assert!(validate_text(&vip("0s")).is_ok(), "0s is off");
}

/// Every action type's `timeout` has the same floor.
#[test]
fn action_timeouts_have_a_floor() {
    for (kind, keys) in [
        ("exec", "acquire = [\"/bin/true\"]"),
        (
            "vip",
            "address = \"198.51.100.1\"\ninterface = \"eth0\"\nannounce_count = 0",
        ),
        ("unit", "unit = \"a.service\""),
    ] {
        let res = format!(
            "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"{kind}\"\ntimeout = \"1ms\"\n{keys}\n"
        );
        let e = errors(&res);
        assert_eq!(
            e,
            [
                "/etc/x.toml:5:11: key `timeout`: 1ms is below the 100ms minimum (a typo for seconds?)"
            ],
            "{kind}"
        );
        assert!(
            validate_text(&res.replace("1ms", "100ms")).is_ok(),
            "{kind}"
        );
    }
}

fn unit_res(name: &str, unit: &str) -> String {
    format!(
        "[[resource]]\nname = \"{name}\"\n[[resource.action]]\ntype = \"unit\"\nunit = \"{unit}\"\n"
    )
}

#[test]
fn unit_action_defaults_and_places() {
    let (c, places) = validate_text(&unit_res("w", "nginx.service")).unwrap();
    assert_eq!(
        c.resources[0].actions,
        vec![ActionSpec::Unit(UnitSpec {
            unit: "nginx.service".into(),
            timeout: DEFAULT_UNIT_TIMEOUT
        })]
    );
    assert_eq!(places.units[0].0, "nginx.service");
    assert_eq!(places.units[0].1.pos, Some((5, 8)));
    assert_eq!(c.resources[0].actions[0].to_string(), "unit nginx.service");
}

#[test]
fn unit_action_errors_name_their_place_and_key() {
    let e = errors(&unit_res("w", "nginx"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("/etc/x.toml:5:8: key `unit`: \"nginx\" does not end in the type"),
        "{e:?}"
    );
    let e = errors("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"unit\"\n");
    assert!(
        e[0].starts_with("/etc/x.toml:3:1: unit action needs `unit`"),
        "{e:?}"
    );
    let e = errors(&format!(
        "{}interface = \"eth0\"\nacquire = [\"/bin/true\"]\n",
        unit_res("w", "a.service")
    ));
    assert_eq!(
        e,
        [
            "/etc/x.toml:7:11: key `acquire` does not apply to unit actions",
            "/etc/x.toml:6:13: key `interface` does not apply to unit actions",
        ]
    );
    let e = errors(
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/true\"]\nunit = \"a.service\"\n",
    );
    assert_eq!(
        e,
        ["/etc/x.toml:6:8: key `unit` does not apply to exec actions"]
    );
}

fn check_res(check: &str) -> String {
    format!(
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/true\"]\n[resource.check]\n{check}"
    )
}

#[test]
fn check_defaults_and_program_place() {
    let (c, places) = validate_text(&check_res("exec = [\"/bin/healthy\", \"-q\"]\n")).unwrap();
    assert_eq!(
        c.resources[0].check,
        Some(CheckSpec {
            exec: vec!["/bin/healthy".into(), "-q".into()],
            interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
            fall: DEFAULT_CHECK_FALL,
            rise: DEFAULT_CHECK_RISE,
            hold_off: DEFAULT_CHECK_HOLD_OFF,
            env: Default::default(),
        })
    );
    let p = places
        .programs
        .iter()
        .find(|p| p.key == "check.exec")
        .unwrap();
    assert_eq!(
        (p.program.as_str(), p.at.pos),
        ("/bin/healthy", Some((7, 8)))
    );
    let (c, _) = validate_text(&check_res(
        "exec = [\"/bin/h\"]\ninterval = \"1s\"\ntimeout = \"500ms\"\nfall = 1\nrise = 5\nhold_off = \"0s\"\n",
    ))
    .unwrap();
    let k = c.resources[0].check.clone().unwrap();
    assert_eq!(
        (k.interval, k.timeout, k.fall, k.rise, k.hold_off),
        (
            Duration::from_secs(1),
            Duration::from_millis(500),
            1,
            5,
            Duration::ZERO
        )
    );
    assert_eq!(
        validate_text(&check_res("exec = [\"/bin/h\"]\n"))
            .unwrap()
            .0
            .resources
            .len(),
        1
    );
}

#[test]
fn check_errors_name_their_place_and_key() {
    let e = errors(&check_res("interval = \"1s\"\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("/etc/x.toml:6:1: [resource.check] needs `exec`"),
        "{e:?}"
    );
    let e = errors(&check_res(
        "exec = [\"bin/h\"]\nfall = 0\nrise = 101\nhold_off = \"25h\"\n",
    ));
    assert_eq!(
        e,
        [
            "/etc/x.toml:7:8: key `exec`: \"bin/h\" is a relative path: write an absolute path, or a bare name to look up in PATH",
            "/etc/x.toml:8:8: key `fall`: must be between 1 and 100 (checks in a row), not 0",
            "/etc/x.toml:9:8: key `rise`: must be between 1 and 100 (checks in a row), not 101",
            "/etc/x.toml:10:12: key `hold_off`: at most 24h, not 1day 1h",
        ]
    );
    let e = errors(&check_res("exec = [\"/bin/h\"]\ntimeout = \"0s\"\n"));
    assert!(
        e[0].starts_with("/etc/x.toml:8:11: key `timeout`: must be greater than zero"),
        "{e:?}"
    );
    // "1ms" for "1s" forked the check hundreds of times a second
    // (issue #19, item 5).
    let e = errors(&check_res(
        "exec = [\"/bin/h\"]\ninterval = \"1ms\"\ntimeout = \"5ms\"\n",
    ));
    assert_eq!(
        e,
        [
            "/etc/x.toml:8:12: key `interval`: 1ms is below the 100ms minimum (a typo for seconds?)",
            "/etc/x.toml:9:11: key `timeout`: 5ms is below the 100ms minimum (a typo for seconds?)",
        ]
    );
    assert!(
        validate_text(&check_res(
            "exec = [\"/bin/h\"]\ninterval = \"100ms\"\ntimeout = \"100ms\"\n"
        ))
        .is_ok()
    );
    let e = errors(&check_res("exec = [\"/bin/h\"]\nfails = 3\n"));
    assert!(
        e[0].starts_with("/etc/x.toml:8:1: unknown field `fails`"),
        "{e:?}"
    );
}

#[test]
fn prefer_and_preempt() {
    let res = "[[resource]]\nname = \"w\"\n";
    let (c, _) = validate_text(res).unwrap();
    assert_eq!(
        (c.resources[0].prefer.len(), c.resources[0].preempt),
        (0, false)
    );
    let (c, _) = validate_text(&format!("{res}prefer = [\"b\", \"a\"]\npreempt = true\n")).unwrap();
    let r = &c.resources[0];
    assert_eq!(
        (r.prefer.clone(), r.preempt),
        (vec!["b".into(), "a".into()], true)
    );
    assert_eq!((r.rank("a"), r.rank("c")), (Some(1), None));
    assert_eq!(r.candidate_lock(1), "w.c1");
    let e = errors(&format!("{res}preempt = true\n"));
    assert_eq!(
        e,
        ["/etc/x.toml:3:11: key `preempt`: needs `prefer`, the nodes in order of preference"]
    );
    let e = errors(&format!("{res}prefer = [\"a\", \"a b\", \"a\"]\n"));
    assert_eq!(
        e,
        [
            "/etc/x.toml:3:16: key `prefer`: node names are 1 to 64 characters without spaces",
            "/etc/x.toml:3:23: key `prefer`: \"a\" is listed twice",
        ]
    );
    let e = errors(&format!(
        "{res}prefer = [\"a\"]\n[[resource]]\nname = \"v\"\nlock = \"w.c0\"\n"
    ));
    assert_eq!(
        e,
        [
            "/etc/x.toml:4:1: lock \"w.c0\" is also the candidate lock of resource \"w\"'s preferred node \"a\": rename one"
        ]
    );
    let e = errors(&format!("{res}prefer = []\n"));
    assert!(
        e[0].starts_with("/etc/x.toml:3:10: key `prefer`: list at least one"),
        "{e:?}"
    );
    let long = "[lock]\nbackend = \"dlmfs\"\n[[resource]]\nname = \"w\"\nlock = \"abcdefghijabcdefghijabcdefghi\"\nprefer = [\"a\"]\n";
    let e = errors(long);
    assert!(
        e[0].starts_with("/etc/x.toml:6:10: key `prefer`: the candidate lock \"abcdefghijabcdefghijabcdefghi.c0\" cannot be used"),
        "{e:?}"
    );
}

#[test]
fn preempt_delay_needs_preempt_and_is_at_most_a_day() {
    let res = "[[resource]]\nname = \"w\"\nprefer = [\"a\"]\n";
    let (c, _) = validate_text(&format!("{res}preempt = true\n")).unwrap();
    assert_eq!(c.resources[0].preempt_delay, Duration::ZERO, "the default");
    let (c, _) = validate_text(&format!("{res}preempt = true\npreempt_delay = \"5m\"\n")).unwrap();
    assert_eq!(c.resources[0].preempt_delay, Duration::from_secs(300));
    for without in ["", "preempt = false\n"] {
        let e = errors(&format!("{res}{without}preempt_delay = \"5m\"\n"));
        let line = 4 + without.lines().count();
        assert_eq!(
            e,
            [format!(
                "/etc/x.toml:{line}:17: key `preempt_delay`: needs `preempt = true` (without it a master never hands over to a preferred node)"
            )]
        );
    }
    // The default written out is no mistake.
    let (c, _) = validate_text(&format!("{res}preempt_delay = \"0s\"\n")).unwrap();
    assert_eq!(c.resources[0].preempt_delay, Duration::ZERO);
    let e = errors(&format!("{res}preempt = true\npreempt_delay = \"2days\"\n"));
    assert!(
        e[0].starts_with("/etc/x.toml:5:17: key `preempt_delay`: at most 24h"),
        "{e:?}"
    );
    let e = errors(&format!("{res}preempt = true\npreempt_delay = \"soon\"\n"));
    assert!(
        e[0].starts_with("/etc/x.toml:5:17: key `preempt_delay`: invalid duration \"soon\""),
        "{e:?}"
    );
}

/// `[node] name` a, the cluster a b c, and `extra`.
fn cluster(extra: &str) -> String {
    format!("[node]\nname = \"a\"\n[cluster]\nnodes = [\"a\", \"b\", \"c\"]\n{extra}")
}

#[test]
fn prefer_spread_is_the_rendezvous_order_over_cluster_nodes() {
    let res = |name: &str| {
        format!("[[resource]]\nname = \"{name}\"\nprefer = \"spread\"\npreempt = true\n")
    };
    let (c, _) = validate_text(&cluster(&format!("{}{}", res("vip000"), res("vip001")))).unwrap();
    let nodes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    for r in &c.resources {
        assert_eq!(
            r.prefer,
            super::spread::order(&r.name, &nodes),
            "{}",
            r.name
        );
        assert!(r.preempt);
    }
    // As in spread's fixed expectations: the list the election sees.
    assert_eq!(c.resources[0].prefer, ["b", "a", "c"]);
    assert_eq!(c.resources[1].prefer, ["c", "b", "a"]);
    // Plain lists go on working beside it, and [cluster] alone is fine.
    let (c, _) = validate_text(&cluster("[[resource]]\nname = \"w\"\nprefer = [\"c\"]\n")).unwrap();
    assert_eq!(c.resources[0].prefer, ["c"]);
    // The candidate locks of the computed list must fit the backend too.
    let long = cluster(
        "[lock]\nbackend = \"dlmfs\"\n[[resource]]\nname = \"w\"\nlock = \"abcdefghijabcdefghijabcdefghi\"\nprefer = \"spread\"\n",
    );
    let e = errors(&long);
    assert!(
        e[0].starts_with("/etc/x.toml:10:10: key `prefer`: the candidate lock \"abcdefghijabcdefghijabcdefghi.c2\" cannot be used"),
        "{e:?}"
    );
}

#[test]
fn prefer_spread_and_cluster_nodes_errors_name_their_place_and_key() {
    let spread = "[[resource]]\nname = \"w\"\nprefer = \"spread\"\n";
    let e = errors(&format!("[node]\nname = \"a\"\n{spread}"));
    assert_eq!(
        e,
        [
            "/etc/x.toml:5:10: key `prefer`: \"spread\" needs `[cluster] nodes` in the main file, every node's name, the same on every node"
        ]
    );
    let e = errors(&cluster(
        "[[resource]]\nname = \"w\"\nprefer = \"spreads\"\n",
    ));
    assert_eq!(
        e,
        [
            "/etc/x.toml:7:10: key `prefer`: \"spreads\" is neither a list of node names (most preferred first) nor \"spread\""
        ]
    );
    let e = errors("[[resource]]\nname = \"w\"\nprefer = 3\n");
    assert!(
        e[0].starts_with("/etc/x.toml:3:10: ")
            && e[0].contains("a list of node names, most preferred first, or \"spread\""),
        "{e:?}"
    );
    // This node must be listed; named or from the hostname.
    let e = errors(&format!(
        "[node]\nname = \"d\"\n[cluster]\nnodes = [\"a\", \"b\"]\n{spread}"
    ));
    assert_eq!(
        e,
        [
            "/etc/x.toml:4:9: key `cluster.nodes`: this node, \"d\" ([node] name), is not listed: add it to `[cluster] nodes` on every node, or set `[node] name` to its name in the list"
        ]
    );
    let e = errors("[cluster]\nnodes = [\"no-such-host.invalid\"]\n");
    assert!(
        e[0].starts_with("/etc/x.toml:2:9: key `cluster.nodes`: this node, ")
            && e[0].contains("(the hostname, as [node] name is not set)"),
        "{e:?}"
    );
    let e = errors("[node]\nname = \"a\"\n[cluster]\nnodes = [\"a\", \"b c\", \"a\"]\n");
    assert_eq!(
        e,
        [
            "/etc/x.toml:4:15: key `cluster.nodes`: node names are 1 to 64 characters without spaces",
            "/etc/x.toml:4:22: key `cluster.nodes`: \"a\" is listed twice",
        ]
    );
    let e = errors("[node]\nname = \"a\"\n[cluster]\nnodes = []\n");
    assert_eq!(
        e,
        [
            "/etc/x.toml:4:9: key `cluster.nodes`: list every node's name ([node] name), at least this one"
        ]
    );
    let e = errors("[cluster]\nnode = [\"a\"]\n");
    assert!(
        e[0].contains("unknown field `node`, expected `nodes`"),
        "{e:?}"
    );
    // Daemon-wide: a drop-in may not set it.
    let drop_in = Source::new(
        "/etc/conf.d/y.toml".into(),
        "[cluster]\nnodes = [\"a\"]\n".into(),
    );
    let e = drop_in
        .parse::<super::model::RawDropIn>()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/etc/conf.d/y.toml:1:2: unknown field `cluster`"),
        "{e}"
    );
}

fn vip_res(name: &str, address: &str, interface: &str) -> String {
    format!(
        "[[resource]]\nname = \"{name}\"\n[[resource.action]]\ntype = \"vip\"\naddress = \"{address}\"\ninterface = \"{interface}\"\n"
    )
}

/// Releasing one would remove the address the other still holds.
#[test]
fn one_vip_is_managed_once() {
    let e = errors(&format!(
        "{}{}",
        vip_res("a", "198.18.0.1/24", "eth0"),
        vip_res("b", "198.18.0.1/24", "eth0")
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("/etc/x.toml:11:11: key `address`: 198.18.0.1 on \"eth0\" is already the VIP of the action at /etc/x.toml:5; one address, one action"),
        "{e:?}"
    );
    // The same address on another interface, or another address, is fine.
    for (addr, iface) in [("198.18.0.1/24", "eth1"), ("198.18.0.2/24", "eth0")] {
        assert!(
            validate_text(&format!(
                "{}{}",
                vip_res("a", "198.18.0.1/24", "eth0"),
                vip_res("b", addr, iface)
            ))
            .is_ok()
        );
    }
}

/// A standby stops the unit whoever started it: two resources managing
/// one unit would stop each other's.
#[test]
fn one_unit_is_managed_once() {
    let e = errors(&format!(
        "{}{}",
        unit_res("a", "web.service"),
        unit_res("b", "web.service")
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("/etc/x.toml:10:8: key `unit`: \"web.service\" is already managed by the action at /etc/x.toml:5"),
        "{e:?}"
    );
    assert!(
        validate_text(&format!(
            "{}{}",
            unit_res("a", "web.service"),
            unit_res("b", "db.service")
        ))
        .is_ok()
    );
}

/// `env` reaches every exec step and the health check of its resource,
/// and only those (issue #19, item 18).
#[test]
fn resource_env_reaches_its_hooks_and_check() {
    let text = "[[resource]]\nname = \"w\"\nenv = { HOME = \"/root\", proxy_1 = \"http://p:3128\" }\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/up\"]\n[resource.check]\nexec = [\"/bin/h\"]\n[[resource]]\nname = \"v\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/up\"]\n";
    let (c, _) = validate_text(text).unwrap();
    let want: std::collections::BTreeMap<String, String> = [
        ("HOME".to_string(), "/root".to_string()),
        ("proxy_1".to_string(), "http://p:3128".to_string()),
    ]
    .into();
    let ActionSpec::Exec(e) = &c.resources[0].actions[0] else {
        panic!()
    };
    assert_eq!(e.env, want);
    assert_eq!(c.resources[0].check.as_ref().unwrap().env, want);
    let ActionSpec::Exec(e) = &c.resources[1].actions[0] else {
        panic!()
    };
    assert!(e.env.is_empty(), "another resource's env");
    // A table of its own is the same.
    let (c2, _) = validate_text(&text.replace(
        "env = { HOME = \"/root\", proxy_1 = \"http://p:3128\" }\n",
        "[resource.env]\nHOME = \"/root\"\nproxy_1 = \"http://p:3128\"\n",
    ))
    .unwrap();
    assert_eq!(c2.resources[0].actions, c.resources[0].actions);
}

#[test]
fn resource_env_names_are_checked_at_their_place() {
    let e = errors(
        "[[resource]]\nname = \"w\"\nenv = { \"1X\" = \"a\", DLM_ELECTD_NODE = \"b\", \"A-B\" = \"c\", OK = \"d\" }\n",
    );
    assert_eq!(
        e,
        [
            "/etc/x.toml:3:9: key `env`: \"1X\" is not a variable name: letters A-Z a-z, digits and _, not starting with a digit",
            "/etc/x.toml:3:21: key `env`: DLM_ELECTD_NODE is reserved: dlm-electd sets the DLM_ELECTD_* variables itself",
            "/etc/x.toml:3:44: key `env`: \"A-B\" is not a variable name: letters A-Z a-z, digits and _, not starting with a digit",
        ]
    );
    let e = errors("[[resource]]\nname = \"w\"\nenv = { A = 1 }\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "/etc/x.toml:3:13: key `env`: invalid type: integer `1`, expected a string"
        ),
        "{e:?}"
    );
    let e = errors("[[resource]]\nname = \"w\"\nenv = { A = \"x\\u0000y\" }\n");
    assert_eq!(
        e,
        ["/etc/x.toml:3:13: key `env`: the value of A contains a NUL byte"]
    );
}

#[test]
fn fail_counts_are_off_by_default_and_their_keys_checked() {
    use super::spec::FailureLimit;
    let res = "[[resource]]\nname = \"w\"\n";
    let (c, _) = validate_text(res).unwrap();
    assert_eq!(c.resources[0].failures, None);
    let (c, _) = validate_text(&format!("{res}max_failures = 3\n")).unwrap();
    assert_eq!(
        c.resources[0].failures,
        Some(FailureLimit {
            max: 3,
            window: DEFAULT_FAILURE_WINDOW,
            timeout: DEFAULT_FAILURE_TIMEOUT
        })
    );
    let (c, _) = validate_text(&format!(
        "{res}max_failures = 1\nfailure_window = \"1m\"\nfailure_timeout = \"2h\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.resources[0].failures,
        Some(FailureLimit {
            max: 1,
            window: Duration::from_secs(60),
            timeout: Duration::from_secs(7200)
        })
    );
    let e = errors(&format!("{res}failure_timeout = \"5m\"\n"));
    assert_eq!(
        e,
        [
            "/etc/x.toml:3:19: key `failure_timeout`: has no effect without `max_failures` (failed acquires that keep this node out)"
        ]
    );
    let e = errors(&format!("{res}max_failures = 0\n"));
    assert_eq!(
        e,
        [
            "/etc/x.toml:3:16: key `max_failures`: must be between 1 and 100 (failed acquires within failure_window), not 0; leave it out for no limit"
        ]
    );
    let e = errors(&format!(
        "{res}max_failures = 2\nfailure_window = \"10ms\"\n"
    ));
    assert_eq!(
        e,
        [
            "/etc/x.toml:4:18: key `failure_window`: 10ms is below the 1s minimum (a typo for seconds?)"
        ]
    );
}

#[test]
fn notify_tables_merge_daemon_wide_first_and_check_their_keys() {
    use crate::state::Status;
    let text = "[[notify]]\nexec = [\"/bin/all\"]\n[[resource]]\nname = \"w\"\nenv = { A = \"1\" }\n[[resource.notify]]\nexec = [\"/bin/mine\"]\ntimeout = \"2s\"\nstates = [\"master\", \"failed\"]\n[[resource]]\nname = \"v\"\n";
    let (c, places) = validate_text(text).unwrap();
    let w = &c.resources[0].notify;
    assert_eq!(w.len(), 2);
    assert_eq!(
        (w[0].exec[0].as_str(), w[0].timeout, w[0].states.clone()),
        ("/bin/all", DEFAULT_NOTIFY_TIMEOUT, None)
    );
    assert_eq!(
        (w[1].exec[0].as_str(), w[1].timeout, w[1].states.clone()),
        (
            "/bin/mine",
            Duration::from_secs(2),
            Some(vec![Status::Master, Status::Failed])
        )
    );
    assert_eq!(
        w[0].env.get("A").map(String::as_str),
        Some("1"),
        "the resource's env"
    );
    assert_eq!(
        c.resources[1].notify.len(),
        1,
        "daemon-wide: every resource"
    );
    let named: Vec<String> = places.programs.iter().map(|p| p.named()).collect();
    assert_eq!(
        named,
        ["key `notify.exec`", "key `notify.exec` of resource \"w\""]
    );
    let e = errors("[[notify]]\ntimeout = \"1s\"\nstates = [\"master\", \"up\", \"master\"]\n");
    assert_eq!(
        e,
        [
            "/etc/x.toml:1:1: [[notify]] needs `exec`, the program to run at each state change, like [\"/usr/local/bin/alert\"]",
            "/etc/x.toml:3:21: key `states`: \"up\" is no state; states are standby, acquiring, master, releasing, backoff, stalled, failed, drained",
            "/etc/x.toml:3:27: key `states`: \"master\" is listed twice",
        ]
    );
    let e = errors("[[notify]]\nexec = [\"/bin/x\"]\nstates = []\n");
    assert_eq!(
        e,
        [
            "/etc/x.toml:3:10: key `states`: list at least one state, or leave the key out for every state"
        ]
    );
}
