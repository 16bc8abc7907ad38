//! Hot reload: new settings replace the old ones whole, between two requests. Counters
//! live in Redis under names made of the rule and limit names, so a reload that keeps
//! those names keeps every counter, and no request is dropped.

use super::config::{Settings, SharedSettings};
use std::sync::{Arc, PoisonError};

/// Swaps the settings of a [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Clone, Debug)]
pub struct Reloader {
    settings: SharedSettings,
}

impl Reloader {
    pub(crate) fn new(settings: SharedSettings) -> Self {
        Self { settings }
    }

    /// Puts `settings` in force for every request from now on.
    pub fn replace(&self, settings: Settings) {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
    }

    #[cfg(feature = "config")]
    /// Reads, checks and puts in force the configuration at `path` (with the
    /// `REDLIMIT__*` environment overrides). On error the old settings stay.
    ///
    /// # Errors
    /// The configuration's first problem, named.
    pub fn reload(&self, path: &std::path::Path) -> Result<(), super::ConfigError> {
        let settings = super::Config::load(path)?.compile()?;
        self.replace(settings);
        Ok(())
    }

    #[cfg(feature = "config")]
    /// Spawns a task reloading `path` on SIGHUP and whenever its contents change
    /// (checked every `poll`). Errors are logged and the old settings stay.
    /// Needs a Tokio runtime; the task ends with the runtime.
    ///
    /// The SIGHUP handler is installed and the file read before this returns: a signal
    /// or a change that comes right after is not missed (nor does the signal's default
    /// action end the process).
    pub fn watch(
        self,
        path: impl Into<std::path::PathBuf>,
        poll: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let path = path.into();
        // The contents, not the modification time: an edit within the clock's
        // granularity, or a copy that keeps the time (`cp -p`), changes only them.
        let contents = |path: &std::path::PathBuf| std::fs::read(path).ok();
        let mut seen: Option<Vec<u8>> = contents(&path);
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::spawn(async move {
            loop {
                #[cfg(unix)]
                let signalled = match hangup.as_mut() {
                    Some(hangup) => tokio::select! {
                        _ = hangup.recv() => true,
                        () = tokio::time::sleep(poll) => false,
                    },
                    None => {
                        tokio::time::sleep(poll).await;
                        false
                    }
                };
                #[cfg(not(unix))]
                let signalled = {
                    tokio::time::sleep(poll).await;
                    false
                };
                let now = contents(&path);
                if !signalled && now == seen {
                    continue;
                }
                seen = now;
                match self.reload(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), signalled, "redlimit: configuration reloaded")
                    }
                    Err(error) => {
                        tracing::error!(path = %path.display(), %error, "redlimit: configuration NOT reloaded; the previous one stays")
                    }
                }
            }
        })
    }
}
