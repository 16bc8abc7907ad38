//! Which engine the live suites run the client with: `REDLIMIT_TEST_ENGINE`.

/// The engine named by `REDLIMIT_TEST_ENGINE`: `module` (or unset), `scripts` or `auto`.
/// Under `scripts` and `auto` the suites start their servers **without** the module and
/// decide through the client's Lua scripts (`redlimit::ServerEngine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestEngine {
    /// The redlimit module (`RL.*` commands): the default.
    Module,
    /// The Lua scripts only.
    Scripts,
    /// Whichever the server offers (here: the scripts, the module being absent).
    Auto,
}

impl TestEngine {
    /// True when the suites' servers load the module.
    #[must_use]
    pub fn loads_module(self) -> bool {
        self == Self::Module
    }
}

/// The engine `REDLIMIT_TEST_ENGINE` names.
///
/// # Panics
/// Any other value than `module`, `scripts` or `auto`.
#[must_use]
pub fn test_engine() -> TestEngine {
    match std::env::var("REDLIMIT_TEST_ENGINE").as_deref() {
        Ok("scripts") => TestEngine::Scripts,
        Ok("auto") => TestEngine::Auto,
        Ok("module" | "") | Err(_) => TestEngine::Module,
        Ok(other) => panic!("REDLIMIT_TEST_ENGINE must be module, scripts or auto, not {other}"),
    }
}
