//! The one way a test waits: poll a condition until it holds, or fail the test.

use std::fmt;
use std::time::{Duration, Instant};

/// How often [`wait_for`] polls.
const POLL: Duration = Duration::from_millis(5);

/// What a condition polled by [`wait_for`] returns: `true`, or `Some(value)`, once it
/// holds.
pub trait Outcome {
    type Value;
    fn ready(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Poll `check` every 5 ms until it holds and return its value; panic with "timed out
/// after TIMEOUT waiting for WHAT" once `timeout` has passed. `what` is formatted only
/// then, so a [`lazy`] one can show the state at the moment of failure (a log, say).
pub fn wait_for<R: Outcome>(
    timeout: Duration,
    what: impl fmt::Display,
    mut check: impl FnMut() -> R,
) -> R::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().ready() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// A message built only when it is shown.
pub struct Lazy<F>(F);

/// A message for [`wait_for`] that `describe` builds only if the wait fails.
pub fn lazy<F: Fn() -> String>(describe: F) -> Lazy<F> {
    Lazy(describe)
}

impl<F: Fn() -> String> fmt::Display for Lazy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.0)())
    }
}
