//! Progress bars on stderr, drawn only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressStyle};

use crate::admin::{Feedback, Meter};

/// Feedback for the CLI: a spinner or a bar per task on a terminal, nothing otherwise.
pub struct Bars {
    show: bool,
}

impl Bars {
    /// Bars drawn when stderr is a terminal.
    pub fn new() -> Bars {
        Bars {
            show: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

struct Bar(ProgressBar);

impl Meter for Bar {
    fn set(&self, done: u64) {
        self.0.set_position(done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Feedback for Bars {
    fn start(&self, message: &str, total: Option<u64>) -> Box<dyn Meter + '_> {
        let bar = match (self.show, total) {
            (false, _) => ProgressBar::hidden(),
            (true, None) => {
                let b = ProgressBar::new_spinner();
                b.enable_steady_tick(std::time::Duration::from_millis(100));
                b
            }
            (true, Some(n)) => {
                let b = ProgressBar::new(n);
                if let Ok(style) =
                    ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} lines")
                {
                    b.set_style(style.progress_chars("=> "));
                }
                b
            }
        };
        bar.set_message(message.to_string());
        Box::new(Bar(bar))
    }
}
