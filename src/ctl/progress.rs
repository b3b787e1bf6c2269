//! Progress bars on a terminal (indicatif), silence otherwise.

use crate::cancel::{NoProgress, Progress};
use crate::error::POISONED;
use indicatif::{ProgressBar, ProgressStyle};
use is_terminal::IsTerminal;
use std::sync::Mutex;

struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn phase(&self, name: &str, total: Option<u64>) {
        let mut g = self.bar.lock().expect(POISONED);
        if let Some(b) = g.take() {
            b.finish_and_clear();
        }
        let b = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("the template is a valid constant")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg:12} {spinner} {bytes} {bytes_per_sec}")
                    .expect("the template is a valid constant"),
            ),
        };
        b.set_message(name.to_string());
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        *g = Some(b);
    }
    fn inc(&self, n: u64) {
        if let Some(b) = &*self.bar.lock().expect(POISONED) {
            b.inc(n);
        }
    }
    fn note(&self, msg: &str) {
        match &*self.bar.lock().expect(POISONED) {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = self.bar.lock().expect(POISONED).take() {
            b.finish_and_clear();
        }
    }
}

/// Notes (warnings, what is waited for) as plain lines on stderr, no bars.
struct Lines;

impl Progress for Lines {
    fn note(&self, msg: &str) {
        eprintln!("{msg}");
    }
}

/// A progress sink: nothing when `quiet`; bars when `bars` and stderr is a terminal; otherwise
/// notes as plain lines on stderr (so waits and warnings are seen in logs and scripts too).
pub(crate) fn make(quiet: bool, bars: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(NoProgress)
    } else if bars && std::io::stderr().is_terminal() {
        Box::new(Bar {
            bar: Mutex::new(None),
        })
    } else {
        Box::new(Lines)
    }
}
