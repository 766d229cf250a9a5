//! `mmn_fast`: the Linux kernel's MMU-notifier scheme (v5.12, with the 5.18 removal fix) for user space.
//!
//! The core is plain Rust with no Python in it, usable on its own by an emulator, a JIT or a
//! device model that caches something derived from memory and must drop it when the memory
//! changes. The Python package is a binding of this crate (behind the `python` feature).
//!
//! - [`interval`]: the one checked `[start, last]` convention;
//! - [`tree`]: the augmented interval tree (an arena AVL tree keyed by start, with subtree max);
//! - [`protocol`]: the `invalidate_seq` protocol, the active count and the deferred list, as
//!   plain transitions on a state that the caller locks;
//! - [`notifier`]: that state wrapped in a mutex and a condition variable (the waits);
//! - [`error`]: what the core refuses.
//!
//! The rule numbers cited in the documentation (R12, D4, ...) are explained on the project's
//! semantics page, `docs/semantics.md`. `examples/emulator_cache.rs` is a whole program: a
//! translated-block cache kept coherent with guest memory by two threads, without Python
//! (`cargo run --example emulator_cache`).
//!
//! # The tree on its own
//!
//! Closed intervals over `u64`, each with a value; queries answer in ascending start. A
//! [`Handle`] names one interval until it is removed (a stale handle is refused, never taken
//! for a newer interval in the same slot).
//!
//! ```
//! use mmn_fast::{Interval, IntervalTree};
//!
//! # fn main() -> Result<(), mmn_fast::Error> {
//! let mut tree = IntervalTree::new();
//! let text = tree.insert(Interval::from_start_length(0x1000, 0x1000)?, "text");
//! tree.insert(Interval::new(0x3000, 0x3fff)?, "data");
//!
//! // Which intervals does the half-open range [0x1800, 0x3001) touch?
//! let query = Interval::from_range(0x1800, 0x3001)?;
//! let hits: Vec<&str> = tree.overlaps(query).map(|(_, _, name)| *name).collect();
//! assert_eq!(hits, ["text", "data"]);
//!
//! assert_eq!(tree.remove(text), Some((Interval::new(0x1000, 0x1fff)?, "text")));
//! assert_eq!(tree.remove(text), None); // the handle is stale now
//! assert_eq!(tree.count_overlap(query), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # The protocol, step by step
//!
//! [`protocol::Protocol`] is the state of one address space's subscriptions; every method is
//! one transition, run with the caller's lock held. A start that overlaps a subscription makes
//! `seq` odd (an *epoch*, R8a); the end that closes the epoch makes it even again (R9). A
//! reader remembers its subscription's seq and retries when the seq has moved (R25, R28).
//!
//! ```
//! use mmn_fast::protocol::{Ended, InsertState, Protocol};
//! use mmn_fast::Interval;
//!
//! # fn main() -> Result<(), mmn_fast::Error> {
//! let mut mm: Protocol<&str> = Protocol::new();
//! assert_eq!(mm.seq(), 2); // a fresh address space (R2)
//! let (key, how) = mm.insert(Interval::from_start_length(0x1000, 0x1000)?, false, "cache")?;
//! assert_eq!(how, InsertState::Idle);
//!
//! // The read side: remember the subscription's seq before reading what it covers.
//! let (seq, must_wait) = mm.read_begin(key)?;
//! assert!(!must_wait);
//!
//! // A writer invalidates [0x1800, 0x1900): the callback of each hit sets its seq (R13, R14).
//! let mut hits = Vec::new();
//! let started = mm.start(Interval::from_range(0x1800, 0x1900)?, |k, _, _, cur_seq| {
//!     hits.push((k, cur_seq));
//! });
//! assert_eq!((started.hits, started.cur_seq), (1, 3)); // seq is odd: an epoch is open
//! for (k, cur_seq) in hits {
//!     // In a real program: under the subscriber's own lock, drop what it cached.
//!     mm.sub_mut(k).expect("still subscribed").1.set_seq(cur_seq);
//! }
//! // ... change the memory here ...
//! assert!(matches!(mm.end()?, Ended::Closed { .. })); // the last end closes the epoch
//! assert_eq!(mm.seq(), 4);
//!
//! // The reader's commit check (under its own lock): the seq moved, so it must read again.
//! let (_, sub) = mm.sub(key).expect("still subscribed");
//! assert_ne!(sub.seq(), seq);
//! # Ok(())
//! # }
//! ```
//!
//! An insert or a remove that arrives while an epoch is open is deferred to the end that
//! closes it, so writers never wait for readers (R35c, R39b):
//!
//! ```
//! use mmn_fast::protocol::{InsertState, Protocol, Removal};
//! use mmn_fast::Interval;
//!
//! # fn main() -> Result<(), mmn_fast::Error> {
//! let mut mm: Protocol<u32> = Protocol::new();
//! let (a, _) = mm.insert(Interval::from_start_length(0x1000, 0x1000)?, false, 1)?;
//! mm.start(Interval::from_range(0x1000, 0x2000)?, |_, _, _, _| {});
//!
//! let (b, how) = mm.insert(Interval::from_start_length(0x1800, 0x100)?, false, 2)?;
//! assert_eq!(how, InsertState::Deferred);
//! assert_eq!(mm.len(), 1); // b is not in the tree yet
//! let Removal::Deferred { wait_seq } = mm.remove(a)? else { panic!("a is in the frozen tree") };
//! assert!(!mm.seq_changed(wait_seq)); // a remover would wait here
//!
//! mm.end()?; // closes the epoch: b enters the tree, a leaves it
//! assert!(mm.seq_changed(wait_seq));
//! assert_eq!(mm.len(), 1);
//! assert!(mm.sub(b).is_some() && mm.sub(a).is_none());
//! # Ok(())
//! # }
//! ```
//!
//! # Threads: the notifier
//!
//! [`notifier::Notifier`] puts a [`protocol::Protocol`] behind a mutex and adds the one wait of
//! the scheme: a reader whose subscription the open epoch touched, and a deferred remove, wait
//! until the epoch closes (R25, R39b). Callbacks must run after the guard is dropped, and the
//! end that closes an epoch must wake the waiters after unlocking.
//!
//! ```
//! use std::sync::{mpsc, Arc};
//! use std::thread;
//! use std::time::Duration;
//!
//! use mmn_fast::notifier::Notifier;
//! use mmn_fast::protocol::Ended;
//! use mmn_fast::Interval;
//!
//! # fn main() -> Result<(), mmn_fast::Error> {
//! let mm: Arc<Notifier<()>> = Arc::new(Notifier::new());
//! let (key, _) = mm.lock().insert(Interval::from_start_length(0x1000, 0x1000)?, false, ())?;
//!
//! // A writer opens an epoch over the subscription and sets its seq (R12-R14).
//! let cur_seq = {
//!     let mut state = mm.lock();
//!     let mut hit = Vec::new();
//!     let started = state.start(Interval::from_range(0x1000, 0x1001)?, |k, _, _, s| hit.push((k, s)));
//!     for (k, s) in hit {
//!         state.sub_mut(k).expect("subscribed").1.set_seq(s);
//!     }
//!     started.cur_seq
//! };
//!
//! // A reader on another thread must wait until the epoch is over.
//! let (began, read_begun) = mpsc::channel();
//! let reader = {
//!     let mm = Arc::clone(&mm);
//!     thread::spawn(move || {
//!         let (seq, must_wait) = mm.lock().read_begin(key).expect("subscribed");
//!         began.send(()).expect("main thread");
//!         if must_wait {
//!             assert!(mm.wait_seq_change(seq, Duration::from_secs(10)));
//!         }
//!         (seq, must_wait)
//!     })
//! };
//!
//! read_begun.recv().expect("reader"); // the reader has seen the open epoch
//! let ended = mm.lock().end()?; // the guard is dropped at the end of this statement
//! if matches!(ended, Ended::Closed { .. }) {
//!     mm.wake_all();
//! }
//! assert_eq!(reader.join().expect("reader"), (cur_seq, true));
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod interval;
pub mod notifier;
pub mod protocol;
pub mod tree;

#[cfg(feature = "python")]
mod bindings;

pub use error::Error;
pub use interval::Interval;
pub use tree::{Handle, IntervalTree};
