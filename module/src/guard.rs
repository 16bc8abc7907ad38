//! The last line of defence at the FFI edge: a panic must never unwind into the server
//! (it would abort it). Every callback the server calls runs inside [`guard`].

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`, answering `fallback` if it panics. The panic hook has already logged it.
pub fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Installs a hook that logs panics to the server log, then calls the previous hook.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        crate::ffi::log_warning(std::ptr::null_mut(), &format!("redlimit: panic: {panic}"));
        previous(panic);
    }));
}

#[cfg(test)]
mod tests {
    use super::guard;

    #[test]
    fn a_panic_becomes_the_fallback() {
        assert_eq!(guard(7, || 3), 3);
        #[allow(clippy::panic)]
        let caught = guard(7, || panic!("boom"));
        assert_eq!(caught, 7);
    }
}
