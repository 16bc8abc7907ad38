//! Which engine decides on the server: the redlimit module (`RL.*` commands), or Lua
//! scripts that run the same algorithms on any Redis >= 6.2 / Valkey >= 7.2 without it
//! (managed services that cannot load modules), or whichever the server offers.

mod adjust;
mod dispatch;
pub mod scripts;
mod translate;
mod verify;

pub(crate) use dispatch::{dispatch, without_errors};
pub(crate) use verify::verify;

use std::sync::{Mutex, PoisonError};

/// What decides the limits on the server; set with
/// [`Backend::with_engine`](crate::Backend::with_engine).
///
/// ```no_run
/// # fn main() -> Result<(), redlimit::Error> {
/// use redlimit::{Backend, RateLimiter, ServerEngine};
/// // ElastiCache, MemoryStore, Azure Cache...: no modules, scripts decide.
/// let backend = Backend::redis("redis://cache.example:6379")?.with_engine(ServerEngine::Auto);
/// let limiter = RateLimiter::builder(backend).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerEngine {
    /// The redlimit module's `RL.*` commands only: a server without the module answers
    /// every decision with the failure policy (and [`verify`](crate::RateLimiter::verify)
    /// says so). The default.
    #[default]
    Module,
    /// Lua scripts only (`EVALSHA`, loaded again after `NOSCRIPT`), even where the
    /// module is loaded. Same algorithms and replies; keys in their own namespace
    /// ([`scripts::script_key`]).
    Scripts,
    /// The module where every server reached has it, the scripts otherwise: asked
    /// (`COMMAND INFO RL.TOKENBUCKET`) once per connection, and again after a reconnect,
    /// a failover, or an `RL.*` command the server does not know.
    Auto,
}

/// The engine of one backend: the choice, and what `Auto` found on the current
/// connection.
pub(crate) struct EngineState {
    choice: ServerEngine,
    /// `Auto` only: whether the module was found (`None`: not asked yet on this connection).
    module_found: Mutex<Option<bool>>,
}

impl EngineState {
    pub(crate) fn new(choice: ServerEngine) -> Self {
        Self {
            choice,
            module_found: Mutex::new(None),
        }
    }

    pub(crate) fn choice(&self) -> ServerEngine {
        self.choice
    }

    /// Whether calls go through the scripts; `None` when `Auto` must ask the server first.
    pub(crate) fn uses_scripts(&self) -> Option<bool> {
        match self.choice {
            ServerEngine::Module => Some(false),
            ServerEngine::Scripts => Some(true),
            ServerEngine::Auto => self.found().map(|module| !module),
        }
    }

    fn found(&self) -> Option<bool> {
        *self
            .module_found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what `Auto` found on `node`, and logs it when it changed.
    pub(crate) fn found_module(&self, module: bool, node: &str) {
        let before = self
            .module_found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(module);
        if before != Some(module) {
            crate::observe::engine_chosen(module, node);
        }
    }

    /// A new connection (or a node that no longer knows `RL.*`): `Auto` asks again.
    pub(crate) fn forget(&self) {
        if self.choice == ServerEngine::Auto {
            self.module_found
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
    }
}
