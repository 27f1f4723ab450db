//! Logging for failures that repeat: on a full disk every append fails,
//! thousands a second. The first failure is logged as an error, then
//! nothing until the operation works again, which is logged with how many
//! failures there were in between.
use std::fmt::Display;

/// One kind of operation's run of failures.
#[derive(Debug, Default)]
pub struct Trouble {
    failures: u64,
}

impl Trouble {
    /// `what` failed with `e`.
    pub fn failed(&mut self, what: &str, e: &dyn Display) {
        if self.failures == 0 {
            tracing::error!("{what} failed: {e} (not logged again until it works)");
        }
        self.failures += 1;
    }

    /// `what` worked.
    pub fn worked(&mut self, what: &str) {
        if self.failures > 0 {
            tracing::info!("{what} works again, after {} failure(s)", self.failures);
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Trouble;

    #[test]
    fn counts_a_run_of_failures_and_resets_when_it_works() {
        let mut t = Trouble::default();
        t.failed("x", &"boom");
        t.failed("x", &"boom");
        assert_eq!(t.failures, 2);
        t.worked("x");
        assert_eq!(t.failures, 0);
    }
}
