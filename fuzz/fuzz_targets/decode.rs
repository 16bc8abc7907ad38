//! `Limiter::decode` on arbitrary bytes (RDB, `RESTORE`, `RL.SETSTATE` all end here):
//! never a panic; an accepted state is canonical (it re-encodes to the very same bytes),
//! round-trips, and can be read and decided at any time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redlimit_core::Limiter;
use redlimit_fuzz::{check_canonical, check_decidable};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(limiter) = Limiter::decode(bytes) {
        check_canonical(&limiter, bytes);
        check_decidable(&limiter);
    }
});
