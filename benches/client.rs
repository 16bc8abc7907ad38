//! Decisions per second through the `redlimit` client (placeholder, filled in next).

fn main() {}
