//! `prefer = "spread"` and `preempt_delay` with real daemons on the `file`
//! backend: three nodes a, b, c share a dozen resources, each ends master
//! of exactly the resources whose rendezvous order puts it first; stopping
//! c moves only c's resources (the others see no release or acquire, by the
//! hooks' event log), and c restarted gets them back. A returning preferred
//! node gets a resource with `preempt_delay` no sooner than the delay after
//! it became a candidate.

mod support;

use dlm_electd::config::spread;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::lab::Lab;
use support::{WAIT, assert_never_two_masters, cli_ok, wait_for};

const NODES: [&str; 3] = ["a", "b", "c"];

fn nodes() -> Vec<String> {
    NODES.map(String::from).to_vec()
}

/// `[cluster] nodes = a, b, c` and resources `names`, each spread over
/// them with `preempt` and `extra` keys, with one exec action whose hooks
/// log to the event log (and `times.log`).
fn spread_config(lab: &Lab, names: &[String], extra: &str) -> String {
    let hook = lab.timed_hook();
    let mut t = "[cluster]\nnodes = [\"a\", \"b\", \"c\"]\n".to_string();
    for n in names {
        t.push_str(&format!(
            "[[resource]]\nname = \"{n}\"\nprefer = \"spread\"\npreempt = true\n{extra}[[resource.action]]\ntype = \"exec\"\nacquire = {hook}\nrelease = {hook}\n"
        ));
    }
    t
}

/// Each resource's most preferred node among `up`, by the crate's own
/// order (what every daemon computes).
fn expected(names: &[String], up: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|r| {
            let first = spread::order(r, &nodes())
                .into_iter()
                .find(|n| up.contains(&n.as_str()))
                .unwrap();
            (r.clone(), first)
        })
        .collect()
}

/// Waits until the running daemons agree on `expect`: each resource has
/// exactly its expected node as master and every other running daemon
/// standby. On a timeout, says what it saw last.
fn wait_masters(lab: &Lab, expect: &BTreeMap<String, String>) {
    let t0 = Instant::now();
    loop {
        let mut wrong = Vec::new();
        for d in lab.daemons.iter().filter(|d| d.child.is_some()) {
            let Some(s) = d.status() else {
                wrong.push(format!("{}: no status", d.node));
                continue;
            };
            for r in s["resources"].as_array().unwrap() {
                let (name, state) = (r["name"].as_str().unwrap(), r["state"].as_str().unwrap());
                let want = match expect.get(name) {
                    Some(n) if *n == d.node => "master",
                    _ => "standby",
                };
                if state != want {
                    wrong.push(format!("{} {name} {state}, not {want}", d.node));
                }
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {expect:?}: {wrong:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_node_masters_its_share_and_only_a_stopped_nodes_share_moves() {
    let mut lab = Lab::new();
    let names: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
    let res = spread_config(&lab, &names, "");
    let all = expected(&names, &NODES);
    let of_c: Vec<&String> = all
        .iter()
        .filter(|(_, n)| *n == "c")
        .map(|(r, _)| r)
        .collect();
    for n in NODES {
        let share = all.values().filter(|m| *m == n).count();
        assert!(
            share > 0,
            "{n} is first for none of {all:?}: pick other names"
        );
    }

    let a = lab.start("a", &res);
    lab.start("b", &res);
    let c = lab.start("c", &res);
    wait_masters(&lab, &all);
    // check-config shows the order the election uses.
    let out = cli_ok(&lab.daemons[a].config, &["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for r in &names {
        let line = format!(
            "prefer {r}: {}, preempt",
            spread::order(r, &nodes()).join(", ")
        );
        assert!(text.contains(&line), "{line:?} in\n{text}");
    }

    // c stops: its resources go to their next choice, nothing else moves.
    let before = lab.events().len();
    lab.daemons[c].stop();
    let without_c = expected(&names, &["a", "b"]);
    wait_masters(&lab, &without_c);
    let mut moved = lab.events()[before..].to_vec();
    moved.sort();
    let mut want: Vec<String> = of_c
        .iter()
        .flat_map(|r| {
            [
                format!("c release {r}"),
                format!("{} acquire {r}", without_c[*r]),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(moved, want, "only c's resources move");

    // c comes back: they return to it, and again nothing else moves.
    let before = lab.events().len();
    lab.start("c", &res);
    wait_masters(&lab, &all);
    let mut back = lab.events()[before..].to_vec();
    back.sort();
    let mut want: Vec<String> = of_c
        .iter()
        .flat_map(|r| {
            [
                format!("{} release {r}", without_c[*r]),
                format!("c acquire {r}"),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(back, want, "only c's resources come back");
    assert_never_two_masters(&lab.events());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The Unix times in ms of the lines of `log` that contain `text`, from
/// their timestamps (tracing's `2026-12-06T20:24:30.123456Z`, UTC): when
/// the daemon did it, on the clock the hooks' `date` reads too.
fn logged_at(log: &str, text: &str) -> Vec<u64> {
    let at = |line: &str| -> Option<u64> {
        let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
        let (date, time) = stamp.split_once('T')?;
        let num = |s: &str| s.parse::<i64>().ok();
        let d: Vec<i64> = date.split('-').map(num).collect::<Option<_>>()?;
        let (hms, frac) = time.split_once('.')?;
        let t: Vec<i64> = hms.split(':').map(num).collect::<Option<_>>()?;
        // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
        let (y, m) = if d[1] <= 2 {
            (d[0] - 1, d[1] + 9)
        } else {
            (d[0], d[1] - 3)
        };
        let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
        let doy = (153 * m + 2) / 5 + d[2] - 1;
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
        let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
        Some((secs * 1000 + num(frac.get(..3)?)?) as u64)
    };
    log.lines()
        .filter(|l| l.contains(text))
        .map(|l| at(l).unwrap_or_else(|| panic!("no timestamp in {l:?}")))
        .collect()
}

/// When the preferred node took its candidate lock (it is first:
/// `web.c0`), each time, by its log.
fn candidate_times(lab: &Lab, i: usize) -> Vec<u64> {
    logged_at(&lab.daemons[i].log(), "candidate lock web.c0 taken")
}

/// The times of `node`'s release hooks.
fn releases(lab: &Lab, node: &str) -> Vec<u64> {
    lab.times()
        .iter()
        .filter(|(_, n, e)| n == node && e == "release")
        .map(|(t, _, _)| *t)
        .collect()
}

#[test]
fn a_returning_preferred_node_waits_out_preempt_delay() {
    let mut lab = Lab::new();
    let name = "web".to_string();
    let order = spread::order(&name, &nodes());
    // The most preferred node comes back to the second, which is master;
    // the third is not running.
    let (first, second) = (order[0].as_str(), order[1].as_str());
    let res = spread_config(
        &lab,
        std::slice::from_ref(&name),
        "preempt_delay = \"2s\"\n",
    );
    let q = lab.start(second, &res);
    lab.daemons[q].wait_state("web", "master");
    let started = now_ms();
    let p = lab.start(first, &res);
    // While the delay runs, the master's status says so.
    let (to, at) = wait_for(WAIT, "the handover in the master's status", || {
        let s = lab.daemons[q].status()?;
        let web = &s["resources"][0];
        assert_eq!(
            web["state"], "master",
            "handed over before status showed it"
        );
        Some((
            web["handover_to"].as_str()?.to_string(),
            web["handover_at_ms"].as_u64()?,
        ))
    });
    let text = String::from_utf8(cli_ok(&lab.daemons[q].config, &["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!("web: handing over to {first} in ")),
        "{text}"
    );
    lab.daemons[p].wait_state("web", "master");
    lab.daemons[q].wait_state("web", "standby");
    let candidate = candidate_times(&lab, p);
    assert_eq!(candidate.len(), 1, "a candidate once");
    assert!(candidate[0] + 1 >= started, "the log is on our clock");
    let released = releases(&lab, second);
    assert_eq!(released.len(), 1, "one handover");
    assert_eq!(to, first);
    // Due 2 s after the master saw the candidate (within a poll of it
    // becoming one).
    let due = at as i64 - candidate[0] as i64;
    assert!((2000..3000).contains(&(due + 1)), "due {due} ms after");
    for i in [p, q] {
        let s = lab.daemons[i].status().unwrap();
        assert!(s["resources"][0].get("handover_to").is_none(), "{s}");
    }
    let after = released[0] as i64 - candidate[0] as i64;
    eprintln!("handed over {after} ms after the preferred node became a candidate");
    // Both ms, truncated.
    assert!(
        after + 1 >= 2000,
        "handed over after {after} ms, before preempt_delay"
    );
    assert!(
        lab.daemons[q]
            .log()
            .contains("handing over after preempt_delay 2s if it stays one"),
        "{}",
        lab.daemons[q].log()
    );
    lab.assert_order(
        &format!("{second} release web"),
        &format!("{first} acquire web"),
    );
}

/// "Eligible that long" means without a gap: a preferred node that stops
/// being a candidate (here its health check fails) for a moment starts its
/// delay over when it is one again.
#[test]
fn a_gap_in_candidacy_starts_preempt_delay_over() {
    let mut lab = Lab::new();
    let name = "web".to_string();
    let order = spread::order(&name, &nodes());
    let (first, second) = (order[0].as_str(), order[1].as_str());
    let check = format!(
        "preempt_delay = \"2s\"\n[resource.check]\nexec = [\"/bin/sh\", \"-c\", \"test ! -e {}/$DLM_ELECTD_NODE.sick\"]\ninterval = \"100ms\"\nfall = 1\nrise = 1\n",
        lab.dir.path().display()
    );
    let res = spread_config(&lab, std::slice::from_ref(&name), &check);
    let q = lab.start(second, &res);
    lab.daemons[q].wait_state("web", "master");
    let p = lab.start(first, &res);
    lab.daemons[q].wait_log("handing over after preempt_delay 2s");
    let t1 = candidate_times(&lab, p)[0];
    // A gap: the preferred node's check fails, so it is no candidate.
    let sick = lab.path(&format!("{first}.sick"));
    std::fs::write(&sick, "").unwrap();
    lab.daemons[q].wait_log("its preempt_delay starts over");
    // Let most of the first delay pass: had the gap not reset the clock,
    // the handover would come right at the next candidacy.
    std::thread::sleep(Duration::from_millis((t1 + 1200).saturating_sub(now_ms())));
    std::fs::remove_file(&sick).unwrap();
    lab.daemons[p].wait_state("web", "master");
    let candidate = candidate_times(&lab, p);
    assert!(candidate.len() >= 2, "a candidate again: {candidate:?}");
    let t2 = *candidate.last().unwrap();
    assert!(t2 >= t1 + 1200, "the gap lasted");
    let released = releases(&lab, second);
    assert_eq!(released.len(), 1, "one handover: {:?}", lab.times());
    let after = released[0] as i64 - t2 as i64;
    eprintln!("handed over {after} ms after the preferred node was a candidate again");
    assert!(
        after + 1 >= 2000,
        "handed over after {after} ms, clock not reset"
    );
    assert_never_two_masters(&lab.events());
}
