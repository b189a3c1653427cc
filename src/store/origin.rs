//! Who asked for the writes a thread begins (an operator's command), so that what they record
//! can say so: set around a piece of work with [`with_origin`], taken by each write
//! transaction begun meanwhile ([`WriteTx::origin`](super::WriteTx::origin)) on the thread
//! that begins it, wherever its closure then runs (a batch's committing thread).

use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static ORIGIN: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Runs `f` with `origin` as the origin of every write this thread begins in it; the
/// thread's previous origin (usually none) comes back afterwards, a panic included.
#[cfg_attr(not(feature = "admin"), allow(dead_code))]
pub(crate) fn with_origin<T>(origin: &str, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            ORIGIN.with_borrow_mut(|o| *o = before);
        }
    }
    let before = ORIGIN.with_borrow_mut(|o| o.replace(Arc::from(origin)));
    let _restore = Restore(before);
    f()
}

/// The origin of the writes this thread begins now, if any.
pub(crate) fn current() -> Option<Arc<str>> {
    ORIGIN.with_borrow(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::{current, with_origin};

    #[test]
    fn an_origin_holds_inside_and_the_previous_comes_back() {
        assert_eq!(current(), None);
        with_origin("outer", || {
            assert_eq!(current().as_deref(), Some("outer"));
            let caught = std::panic::catch_unwind(|| {
                with_origin("inner", || {
                    assert_eq!(current().as_deref(), Some("inner"));
                    panic!("taken back");
                })
            });
            assert!(caught.is_err());
            assert_eq!(current().as_deref(), Some("outer"));
        });
        assert_eq!(current(), None);
    }
}
