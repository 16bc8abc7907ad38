//! Workspace-level live tests, benchmarks and examples live beside this file.
