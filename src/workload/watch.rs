//! A holder's watch over its `file` lock's names, for `run-locked` while
//! its program runs and for `lock`'s holder process.

use crate::lock::twin;
use std::fs::File;
use std::time::Duration;

/// A holder's watch over its `file` lock's names (`run-locked` while the
/// program runs, `lock`'s holder process): every `every` it puts a deleted
/// name back (`twin::Names::keep`) and says so through `say`; once both
/// names are gone it says so, loudly, at every look: the lock still keeps
/// this host's contenders out, not other hosts' on a cluster filesystem.
pub struct Watch {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

pub fn watch(
    names: twin::Names,
    file: File,
    every: Duration,
    say: impl Fn(&str) + Send + 'static,
) -> Watch {
    let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        let (flag, cv) = &*s;
        let mut stopped = flag.lock().unwrap();
        loop {
            stopped = cv.wait_timeout(stopped, every).unwrap().0;
            if *stopped {
                return;
            }
            look(&names, &file, &say);
        }
    });
    Watch { stop, thread }
}

/// One look of a [`watch`].
pub fn look(names: &twin::Names, file: &File, say: &dyn Fn(&str)) {
    match names.keep(file) {
        Ok(None) => {}
        Ok(Some(fixed)) => say(&fixed),
        Err(e) => say(&format!(
            "ERROR: {e}; contenders on this host still find the lock busy (listed in /proc/locks)"
        )),
    }
}

impl Watch {
    pub fn stop(self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        let _ = self.thread.join();
    }
}
