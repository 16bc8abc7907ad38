//! The strategies: random command lines, and random limiters and stored states.

pub mod calls;
pub mod limiters;
