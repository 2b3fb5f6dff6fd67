//! A progress bar on stderr for long runs (`lpsim sweep`, `--seeds N`),
//! drawn with `indicatif`.
//!
//! The bar is drawn only when stderr is a terminal (indicatif's
//! `ProgressDrawTarget::stderr` hides itself otherwise, and when `TERM` is
//! unset or `dumb`), so logs, pipes and CI see nothing; `--quiet` hides it
//! too. It never writes to stdout or to an output file, and counting is
//! thread-safe: rayon workers call [`Progress::inc`] in any order while the
//! results are still collected in their deterministic order.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A counter of finished work items, shown as a bar on a terminal's stderr.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `len` items of `what` (e.g. "points", "seeds"). Hidden when
    /// `quiet`, when stderr is not a terminal, or when there is one item or
    /// none (nothing to watch).
    pub fn new(len: u64, what: &str, quiet: bool) -> Progress {
        let target = if quiet || len <= 1 {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "lpsim: {{bar:32}} {{pos}}/{{len}} {what} ({{elapsed}}, eta {{eta}})"
        )) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar }
    }

    /// Whether anything is drawn.
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// One more item finished; callable from any thread.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An early return (an error) must not leave a half-drawn bar.
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn hidden_bars_count_from_many_threads() {
        let p = Progress::new(100, "items", true);
        assert!(p.is_hidden());
        let v: Vec<u64> = (0..100u64)
            .into_par_iter()
            .map(|i| {
                p.inc();
                i * 2
            })
            .collect();
        assert_eq!(v, (0..100u64).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(p.bar.position(), 100);
        p.finish();
        // One item or none: nothing to watch.
        assert!(Progress::new(1, "items", false).is_hidden());
    }
}
