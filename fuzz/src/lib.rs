//! Shared code of the fuzz targets: the module's argument parsers compiled from their
//! own source files, and the properties every limiter must satisfy.
//!
//! The module crate (`redlimit-module`) is a `cdylib` only, so a fuzz target cannot link
//! it. Its parsers are pure functions over bytes, though: `args.rs`, `error.rs` and
//! `commands/options.rs` are compiled here unchanged (`#[path]`), over a stand-in `ffi`
//! whose "server string" is a pointer to a byte slice owned by the fuzz input.

#![allow(dead_code)]

use redlimit_core::{
    Algorithm, Concurrency, Decision, Limiter, MAX_DURATION_MS, MAX_TIME_MS, Policy, Request,
    Timestamp,
};

/// The module's error type and reply texts (`module/src/error.rs`, unchanged).
#[path = "../../module/src/error.rs"]
pub mod error;

/// The module's argument reader and integer parsers (`module/src/args.rs`, unchanged).
#[path = "../../module/src/args.rs"]
pub mod args;

/// The module's option parser (`module/src/commands/options.rs`, unchanged).
#[path = "../../module/src/commands/options.rs"]
pub mod options;

/// What `args.rs` needs of the module's `ffi`: a copyable raw argument and its bytes.
/// Here an argument is a pointer to a byte slice that outlives the parse.
pub mod ffi {
    /// A raw argument: a borrowed byte slice.
    pub type RawString = *const [u8];

    /// The bytes of an argument. Safe to call, like the module's own `ffi::bytes`
    /// whose signature `args.rs` expects.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn bytes<'a>(string: RawString) -> &'a [u8] {
        // SAFETY: every `RawString` is made by `argv` below from a slice that lives as
        // long as the `Args` reading it.
        unsafe { &*string }
    }

    /// The raw arguments of a command named `name` followed by `words`.
    pub fn argv<'a>(name: &'a [u8], words: &[&'a [u8]]) -> Vec<RawString> {
        std::iter::once(name)
            .chain(words.iter().copied())
            .map(std::ptr::from_ref)
            .collect()
    }
}

/// The latest "now" a server can decide at, in Unix milliseconds: the decoder's time
/// bound less the longest window or lease a policy may add to it. A real clock (now,
/// plus the at most 317-year `clock-offset-ms` of tests) is far below it.
pub const LATEST_NOW_MS: u64 = MAX_TIME_MS - 2 * MAX_DURATION_MS;

/// Times worth deciding a stored limiter at: the epoch, around its own times, its idle
/// moment, the latest realistic now, and the far future.
pub fn probe_times(limiter: &Limiter) -> Vec<Timestamp> {
    let idle = limiter.idle_at();
    vec![
        Timestamp::EPOCH,
        Timestamp::from_micros(1),
        Timestamp::from_millis(1_700_000_000_000),
        Timestamp::from_micros(idle.as_micros().saturating_sub(1)),
        idle,
        idle.plus_micros(1),
        Timestamp::from_millis(LATEST_NOW_MS),
        Timestamp::from_millis(MAX_TIME_MS),
        Timestamp::from_micros(u64::MAX),
    ]
}

/// The policy a command would decide `limiter` with (`None` for leases and usage
/// counters, which have no `Policy`).
pub fn own_policy(limiter: &Limiter) -> Option<Policy> {
    Some(match limiter {
        Limiter::TokenBucket(p, _) => Policy::TokenBucket(*p),
        Limiter::Throttle(p, _) => Policy::Throttle(*p),
        Limiter::Fixed(p, _) => Policy::Fixed(*p),
        Limiter::Sliding(p, _) => Policy::Sliding(*p),
        Limiter::SlidingApprox(p, _) => Policy::SlidingApprox(*p),
        Limiter::Concurrency(..) | Limiter::Usage(..) => return None,
    })
}

/// A decision's numbers are consistent: never more remaining than the limit — except a
/// throttle's, which is redis-cell's number, quirk included (it divides whole
/// microseconds, so for intervals that are not a whole number of them it can exceed the
/// limit, as `CL.THROTTLE` does; see docs/commands.md).
pub fn check_decision(decision: &Decision, what: &str, algorithm: Algorithm) {
    if algorithm == Algorithm::Throttle {
        return;
    }
    assert!(
        decision.remaining <= decision.limit,
        "{what}: remaining {} above limit {}",
        decision.remaining,
        decision.limit
    );
}

/// A limiter the decoder accepted from `bytes`: its encoding is exactly `bytes`
/// (canonical), and it decodes back to itself.
pub fn check_canonical(limiter: &Limiter, bytes: &[u8]) {
    let encoded = limiter.encode();
    assert_eq!(
        encoded, bytes,
        "the decoder accepted a non-canonical encoding"
    );
    check_round_trip(limiter);
}

/// `limiter` encodes (by both encoders alike) to bytes the decoder accepts as itself.
pub fn check_round_trip(limiter: &Limiter) {
    let encoded = limiter.encode();
    match Limiter::decode(&encoded) {
        Ok(decoded) => assert_eq!(&decoded, limiter, "decode(encode(x)) != x"),
        Err(error) => panic!("the decoder refuses {limiter:?} ({error}): {encoded:?}"),
    }
    let mut buffer = vec![0u8; encoded.len()];
    assert_eq!(limiter.encode_into(&mut buffer), Some(encoded.len()));
    assert_eq!(buffer, encoded, "encode_into differs from encode");
    if let Some(short) = buffer.get_mut(..encoded.len().saturating_sub(1)) {
        assert_eq!(limiter.encode_into(short), None, "a short buffer fits");
    }
}

/// Every stored limiter can be read and decided at any time without a panic, and a
/// state its own policy stores at a realistic time decodes back.
pub fn check_decidable(limiter: &Limiter) {
    let _ = limiter.memory_usage();
    let _ = limiter.policy_fields();
    for now in probe_times(limiter) {
        check_decision(&limiter.status(now), "status", limiter.algorithm());
        let _ = Limiter::live(Some(limiter), now);
        if let Limiter::Usage(shape, counted) = limiter {
            let buckets = shape.read(counted, now);
            assert!(buckets.len() as u64 <= shape.buckets(), "more buckets than the ring");
            let _ = shape.record(Some(limiter), now, 1);
        }
        if let Limiter::Concurrency(policy, leases) = limiter {
            for id in [&b"fuzz"[..], b""] {
                check_acquire(policy, Some(leases), now, id, false);
            }
            if let Some(lease) = leases.held().first() {
                check_acquire(policy, Some(leases), now, &lease.id, false);
                let (_, left) = leases.release(now, &lease.id);
                if let Some(left) = left {
                    check_round_trip(&Limiter::Concurrency(*policy, Box::new(left)));
                }
            }
        }
        let Some(policy) = own_policy(limiter) else {
            continue;
        };
        for request in [
            Request::new(1),
            Request::new(0),
            Request::new(policy.limit()),
            Request {
                peek: true,
                ..Request::new(1)
            },
        ] {
            check_decide(&policy, Some(limiter), now, request);
        }
    }
}

/// Decides `request` and checks the outcome: a consistent decision, no update for a
/// denied or read-only request, and an update the decoder accepts as itself (when `now`
/// is a time a server can have).
pub fn check_decide(policy: &Policy, stored: Option<&Limiter>, now: Timestamp, request: Request) {
    let Ok(outcome) = policy.decide(stored, now, request) else {
        return;
    };
    check_decision(&outcome.decision, "decide", policy.algorithm());
    assert_eq!(outcome.decision.limit, policy.limit(), "decision limit");
    if !outcome.decision.allowed || request.peek {
        assert!(outcome.update.is_none(), "a denied or peek request stores");
    }
    if let Some(update) = &outcome.update
        && now.as_micros() / 1_000 <= LATEST_NOW_MS
    {
        check_round_trip(update);
    }
}

/// Takes the lease `id` and checks the outcome as [`check_decide`] does.
pub fn check_acquire(
    policy: &Concurrency,
    stored: Option<&redlimit_core::Leases>,
    now: Timestamp,
    id: &[u8],
    peek: bool,
) {
    let outcome = policy.acquire(stored, now, id, peek);
    check_decision(&outcome.decision, "acquire", Algorithm::Concurrency);
    if !outcome.decision.allowed || peek {
        assert!(outcome.update.is_none(), "a denied or peek acquire stores");
    }
    if let Some(update) = outcome.update
        && now.as_micros() / 1_000 <= LATEST_NOW_MS
    {
        check_round_trip(&Limiter::Concurrency(*policy, Box::new(update)));
    }
}

/// The input of the `decide` target: a policy, a request, a time, and a stored state.
///
/// Layout: algorithm byte (0–5: token bucket, throttle, fixed, sliding, sliding-approx,
/// concurrency, modulo 6), flags byte (bit 0: `PEEK`), three policy numbers, cost,
/// `MAXWAIT` ms, now in µs (u64 little-endian each), a lease-id length byte and the id,
/// then the stored state's encoding (empty: no key).
#[derive(Clone, Debug, Default)]
pub struct DecideInput {
    /// Which algorithm, modulo 6.
    pub algorithm: u8,
    /// `PEEK`.
    pub peek: bool,
    /// The policy's numbers, in constructor order.
    pub numbers: [u64; 3],
    /// The request's cost.
    pub cost: u64,
    /// The request's `MAXWAIT`.
    pub max_wait_ms: u64,
    /// The decision time, µs since the epoch.
    pub now_micros: u64,
    /// The lease id (concurrency).
    pub id: Vec<u8>,
    /// The stored state's encoding.
    pub state: Vec<u8>,
}

impl DecideInput {
    /// Reads an input; `None` when too short.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let (&algorithm, rest) = bytes.split_first()?;
        let (&flags, mut rest) = rest.split_first()?;
        let mut next = || -> Option<u64> {
            let (word, tail) = rest.split_first_chunk::<8>()?;
            rest = tail;
            Some(u64::from_le_bytes(*word))
        };
        let numbers = [next()?, next()?, next()?];
        let (cost, max_wait_ms, now_micros) = (next()?, next()?, next()?);
        let (&id_len, rest) = rest.split_first()?;
        let (id, state) = rest.split_at_checked(usize::from(id_len))?;
        Some(Self {
            algorithm: algorithm % 6,
            peek: flags & 1 != 0,
            numbers,
            cost,
            max_wait_ms,
            now_micros,
            id: id.to_vec(),
            state: state.to_vec(),
        })
    }

    /// The bytes [`parse`](Self::parse) reads back as this input.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.algorithm, u8::from(self.peek)];
        for n in self.numbers {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for n in [self.cost, self.max_wait_ms, self.now_micros] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let id = self.id.get(..255).unwrap_or(&self.id);
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
        out.extend_from_slice(&self.state);
        out
    }
}
