//! Who asked for the writes a thread begins (an operator's command, a web request), so that
//! what they record can say so: set around a piece of work with [`with_origin`] (public as
//! [`Redkeep::with_origin`](crate::Redkeep::with_origin)), taken by each write transaction
//! begun meanwhile ([`WriteTx::origin`](super::WriteTx::origin)) on the thread that begins
//! it, wherever its closure then runs (a batch's committing thread). An [`Origin`] is checked
//! when made, so the audit log shows it on one line as it was given.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

thread_local! {
    static ORIGIN: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Where the writes of a piece of work come from, as the audit log records it
/// ([`AuditEvent::origin`](crate::auth::audit::AuditEvent::origin)): `web, 203.0.113.7`,
/// `redkeep CLI, uid 0`. Made with [`Origin::new`], which refuses what would not show as one
/// honest line; used with [`Redkeep::with_origin`](crate::Redkeep::with_origin).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin(Arc<str>);

impl Origin {
    /// The longest origin, in characters.
    pub const MAX_CHARS: usize = 200;

    /// An origin of `text`.
    ///
    /// ```
    /// let origin = redkeep::Origin::new("web, 203.0.113.7")?;
    /// assert_eq!(origin.as_str(), "web, 203.0.113.7");
    /// assert!(redkeep::Origin::new("web\n(forged line)").is_err());
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` for text that is empty (or only spaces), longer than
    /// [`MAX_CHARS`](Self::MAX_CHARS) characters, or holds a control character (a line
    /// break, an escape), a line or paragraph separator, or an invisible or
    /// direction-changing character: what the log shows must read as it was written.
    pub fn new(text: impl Into<String>) -> Result<Origin> {
        let text = text.into();
        let refuse = |why: &str| {
            Err(Error::invalid(
                "origin",
                format!(
                    "{why}; give at most {} characters on one line, without control, invisible \
                     or direction-changing characters",
                    Self::MAX_CHARS
                ),
            ))
        };
        if text.trim().is_empty() {
            return refuse("the origin is empty");
        }
        if text.chars().count() > Self::MAX_CHARS {
            return refuse(&format!(
                "the origin is {} characters long",
                text.chars().count()
            ));
        }
        if let Some(c) = text.chars().find(|&c| {
            c.is_control() || crate::bytes::invisible(c) || matches!(c, '\u{2028}' | '\u{2029}')
        }) {
            return refuse(&format!(
                "the origin holds the character U+{:04X}",
                c as u32
            ));
        }
        Ok(Origin(Arc::from(text)))
    }

    /// The origin's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Origin").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Runs `f` with `origin` as the origin of every write this thread begins in it; the
/// thread's previous origin (usually none) comes back afterwards, a panic included.
pub(crate) fn with_origin<T>(origin: &Origin, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            ORIGIN.with_borrow_mut(|o| *o = before);
        }
    }
    let before = ORIGIN.with_borrow_mut(|o| o.replace(origin.0.clone()));
    let _restore = Restore(before);
    f()
}

/// The origin of the writes this thread begins now, if any.
pub(crate) fn current() -> Option<Arc<str>> {
    ORIGIN.with_borrow(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::{Origin, current, with_origin};

    #[test]
    fn an_origin_holds_inside_and_the_previous_comes_back() {
        let outer = Origin::new("outer").unwrap();
        let inner = Origin::new("inner").unwrap();
        assert_eq!(current(), None);
        with_origin(&outer, || {
            assert_eq!(current().as_deref(), Some("outer"));
            let caught = std::panic::catch_unwind(|| {
                with_origin(&inner, || {
                    assert_eq!(current().as_deref(), Some("inner"));
                    panic!("taken back");
                })
            });
            assert!(caught.is_err());
            assert_eq!(current().as_deref(), Some("outer"));
        });
        assert_eq!(current(), None);
    }

    #[test]
    fn an_origin_that_would_not_show_as_one_honest_line_is_refused() {
        let long = "x".repeat(Origin::MAX_CHARS + 1);
        for bad in [
            "",
            "  ",
            "web\nadmin",
            "web\r",
            "web\u{1b}[31m",
            "web\u{202e}1.2.3.4",
            "web\u{2066}x",
            "web\u{200b}",
            "web\u{2028}x",
            long.as_str(),
        ] {
            let e = Origin::new(bad).unwrap_err();
            assert!(
                matches!(e, crate::Error::InvalidInput { .. }),
                "{bad:?}: {e}"
            );
        }
        let most = "é".repeat(Origin::MAX_CHARS);
        assert_eq!(Origin::new(most.clone()).unwrap().as_str(), most);
        assert_eq!(
            Origin::new("web, 203.0.113.7").unwrap().to_string(),
            "web, 203.0.113.7"
        );
    }
}
