//! A runner on the `file` backend in a temporary dir, beside a rival
//! holder of the same lock (another open file description: OFD locks
//! conflict within one process too). The real daemon around it is
//! covered by tests/*.rs.
use super::*;
use crate::config::Standby;
use crate::lock::TryLock;
use crate::lock::file::FileBackend;
use crate::state::Status;
use std::path::Path;
use std::time::Instant;

const POLL: Duration = Duration::from_millis(20);
const OP_TIMEOUT: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

fn spec(poll: Duration) -> ResourceSpec {
    ResourceSpec {
        name: "web".into(),
        lock: "web".into(),
        poll_interval: poll,
        actions: Vec::new(),
        check: None,
        prefer: Vec::new(),
        preempt: false,
        failures: None,
        notify: Vec::new(),
        preempt_delay: Duration::ZERO,
    }
}

/// A runner, the board it publishes on, and its membership watch.
fn runner(
    dir: &Path,
    standby: Standby,
    poll: Duration,
) -> (Runner, Board, watch::Sender<Option<String>>) {
    let board = Board::default();
    let (doubt, membership) = watch::channel(None);
    let r = Runner {
        spec: Arc::new(spec(poll)),
        node: "n1".into(),
        backend: Arc::new(FileBackend::new(dir.to_path_buf(), standby)),
        op_timeout: OP_TIMEOUT,
        board: board.clone(),
        changed: watch::channel(()).0,
        record: Record::at(dir.join("applied/web")),
        metrics: Arc::new(Metrics::new(false)),
        deferral: Default::default(),
        membership,
        links: None,
        drain: watch::channel(None).1,
    };
    (r, board, doubt)
}

/// Another holder's try at the lock: Some while it holds it.
fn rival(dir: &Path) -> Option<Box<dyn HeldLock>> {
    match FileBackend::new(dir.to_path_buf(), Standby::Poll).try_lock("web") {
        Ok(TryLock::Acquired(h)) => Some(h),
        Ok(TryLock::Busy) => None,
        Err(e) => panic!("rival: {e}"),
    }
}

/// Waits (10 s at most) until the runner's row satisfies `f`.
async fn until(board: &Board, what: &str, f: impl Fn(&ResourceStatus) -> bool) -> ResourceStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = board.snapshot().into_iter().find(|s| s.name == "web")
            && f(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}: {:?}",
            board.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn ask(tx: &mpsc::Sender<Request>, req: impl FnOnce(Reply) -> Request) -> Result<(), String> {
    let (reply, answer) = oneshot::channel();
    tx.send(req(reply)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answered")
        .expect("reply sent")
}

#[tokio::test]
async fn wins_a_free_lock_and_gives_it_back_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (r, board, _doubt) = runner(dir.path(), Standby::Wait, POLL);
    let (tx, rx) = mpsc::channel(4);
    let run = tokio::spawn(r.run(rx));
    until(&board, "master", |s| s.state == Status::Master).await;
    assert!(rival(dir.path()).is_none(), "the master holds the lock");
    let (ping, pong) = oneshot::channel();
    tx.send(Request::Ping(ping)).await.unwrap();
    pong.await.expect("a master answers pings");
    tx.send(Request::Shutdown).await.unwrap();
    let last = run.await.unwrap();
    assert_eq!(last.state, Status::Standby, "exited without the lock");
    assert!(rival(dir.path()).is_some(), "the lock was given up");
}

#[tokio::test]
async fn release_holds_off_and_resume_competes_again() {
    let dir = tempfile::tempdir().unwrap();
    let (r, board, _doubt) = runner(dir.path(), Standby::Wait, POLL);
    let (tx, rx) = mpsc::channel(4);
    let run = tokio::spawn(r.run(rx));
    until(&board, "master", |s| s.state == Status::Master).await;
    let hold_off = |reply| Request::Release {
        hold_off: HOUR,
        reply,
    };
    assert_eq!(ask(&tx, hold_off).await, Ok(()), "answered once unlocked");
    let st = until(&board, "holding off", |s| s.hold_off_until_ms.is_some()).await;
    assert_eq!(st.state, Status::Standby);
    let theirs = rival(dir.path()).expect("the lock was given up");
    // Past the hold-off's first polls: the runner stays out.
    tokio::time::sleep(POLL * 5).await;
    assert_eq!(
        ask(&tx, hold_off).await,
        Err("not master (state standby)".into())
    );
    assert_eq!(ask(&tx, Request::Resume).await, Ok(()));
    until(&board, "competing", |s| s.hold_off_until_ms.is_none()).await;
    assert_eq!(
        ask(&tx, Request::Resume).await,
        Err("not holding off (state standby)".into())
    );
    theirs.release().unwrap();
    until(&board, "master again", |s| s.state == Status::Master).await;
    tx.send(Request::Shutdown).await.unwrap();
    assert_eq!(run.await.unwrap().state, Status::Standby);
}

#[tokio::test]
async fn membership_in_doubt_gives_mastership_up_until_sound_again() {
    let dir = tempfile::tempdir().unwrap();
    let (r, board, doubt) = runner(dir.path(), Standby::Wait, POLL);
    let (tx, rx) = mpsc::channel(4);
    let run = tokio::spawn(r.run(rx));
    until(&board, "master", |s| s.state == Status::Master).await;
    doubt.send_replace(Some("not running for 18s".into()));
    let st = until(&board, "out", |s| s.state == Status::Standby).await;
    let err = st.last_error.expect("says why");
    assert!(err.starts_with("not running for 18s: not master"), "{err}");
    // The lock was given up, and no poll takes it again while in doubt.
    drop(rival(dir.path()).expect("the lock was given up"));
    tokio::time::sleep(POLL * 10).await;
    assert!(rival(dir.path()).is_some(), "not competing in doubt");
    doubt.send_replace(None);
    until(&board, "master again", |s| s.state == Status::Master).await;
    tx.send(Request::Shutdown).await.unwrap();
    assert_eq!(run.await.unwrap().state, Status::Standby);
}

/// Drives a task by hand until `done` says so (10 s at most).
async fn turn_until(t: &mut Task, mut cmd: Command, done: impl Fn(&Task) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        t.carry_out(cmd).await;
        if done(t) {
            return;
        }
        assert!(Instant::now() < deadline, "never got there");
        let d = t.op.next().await;
        cmd = t.on_done(d);
    }
}

#[tokio::test]
async fn a_reload_gives_the_machine_the_new_interval_and_a_new_timeout_a_fresh_wait() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = rival(dir.path()).unwrap();
    // Polling (the schedule's thread), an hour apart.
    let (r, _board, _doubt) = runner(dir.path(), Standby::Poll, HOUR);
    let (mut t, cmd) = Task::new(r);
    turn_until(&mut t, cmd, |t| matches!(t.op, Op::Wait(_))).await;
    assert_eq!(t.m.poll(), HOUR);

    // The interval alone: the machine's, and the waiting thread's from
    // its next try on; the wait goes on.
    let cmd = t.on_update(Arc::new(spec(POLL)), OP_TIMEOUT).await;
    assert_eq!(cmd, Command::Keep);
    assert_eq!(t.m.poll(), POLL);
    assert!(matches!(t.op, Op::Wait(_)), "the same wait");

    // A new op_timeout: the waiting thread has the old one, so the
    // wait gives way to a sleep of the new interval (not the hour the
    // thread's next try is due in), then a fresh attempt.
    let cmd = t.on_update(Arc::new(spec(POLL)), OP_TIMEOUT * 2).await;
    assert_eq!(t.r.op_timeout, OP_TIMEOUT * 2);
    assert!(matches!(t.op, Op::Sleep(_)), "the wait was retired");
    theirs.release().unwrap();
    turn_until(&mut t, cmd, |t| t.m.is_master()).await;
}

/// One runner per resource lives as long as the daemon, so its future's
/// size is paid thousands of times (issue #24, master RSS): the task is
/// boxed once (an async fn keeps its arguments twice), the rare steps'
/// futures are boxed when they run, and a master's hold carries no
/// preempt or re-announce state inline. Measured 104, 920 and 528 bytes
/// (4,640 and 1,984 before); the bounds leave room for compiler changes.
#[tokio::test]
async fn a_runners_future_and_a_masters_hold_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let (r, _board, _doubt) = runner(dir.path(), Standby::Poll, POLL);
    let (_tx, rx) = tokio::sync::mpsc::channel(8);
    let run = r.run(rx);
    assert!(
        std::mem::size_of_val(&run) <= 256,
        "{}",
        std::mem::size_of_val(&run)
    );
    drop(run);
    let (r, _board, _doubt) = runner(dir.path(), Standby::Poll, POLL);
    let (mut task, _cmd) = super::Task::new(r);
    let (_tx, mut rx) = tokio::sync::mpsc::channel(8);
    let next = task.next_event(&mut rx);
    assert!(
        std::mem::size_of_val(&next) <= 1536,
        "{}",
        std::mem::size_of_val(&next)
    );
    drop(next);
    let hold = crate::election::hold::hold(vec![], None, None, POLL, POLL);
    assert!(
        std::mem::size_of_val(&hold) <= 1024,
        "{}",
        std::mem::size_of_val(&hold)
    );
}
