//! Helpers shared by the integration tests: a data dir in a temp folder, cheap argon2
//! parameters and a manual clock.
#![allow(dead_code)]

use std::sync::Arc;

use redkeep::{ManualClock, Options, PasswordParams, Redkeep, Timestamp};

/// The argon2 parameters the CLI tests pass through `REDKEEP_ARGON2`.
pub const FAST_ARGON2: &str = "m=8,t=1,p=1";

pub struct TestDir {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(Timestamp(1_800_000_000))),
        }
    }

    pub fn options(&self) -> Options {
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .clock(self.clock.clone())
    }

    pub fn open(&self) -> Redkeep {
        Redkeep::open(self.dir.path(), self.options()).unwrap()
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}
