//! An emulator's translated-block cache kept coherent with guest memory by the notifier, in
//! Rust alone: `cargo run --example emulator_cache [-- SECONDS]`.
//!
//! Guest memory is split into blocks of [`BLOCK`] bytes. The *executor* thread "translates" a
//! block (here: a checksum of its bytes) and caches the translation; the *patcher* thread
//! rewrites guest code. Each cached block owns an interval subscription over its bytes, and the
//! two threads follow the scheme of the kernel's `mmu_interval_notifier` (rule numbers as on
//! the project's semantics page):
//!
//! - patcher: `start` over the bytes it will write (R12); for each subscription hit, under the
//!   cache lock, `set_seq(cur_seq)` and drop the cached translation (R13, R14); write the bytes;
//!   `end` (R17), waking readers when the epoch closes;
//! - executor: on a miss, `read_begin` (waiting out an epoch that touched the block, R25);
//!   translate from memory without the cache lock; then, under the cache lock, commit only if
//!   the subscription's seq is still the one read (`read_retry`, R28), else translate again.
//!
//! Lock order: the cache lock, then the notifier's lock (never the other way round), and no
//! lock is held while memory is translated. After each `start` the patcher checks the point of
//! the whole scheme: no translation of a block it is about to change is left in the cache.
//! At the end every cached translation must equal a fresh translation of memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use mmn_fast::notifier::Notifier;
use mmn_fast::protocol::{Ended, SubKey};
use mmn_fast::{Error, Interval};

/// Bytes per translated block.
const BLOCK: u64 = 64;
/// Blocks of guest memory.
const BLOCKS: u64 = 256;
/// How long a reader may wait for an epoch to close before the program gives up (a bug).
const WAIT: Duration = Duration::from_secs(10);

/// A cached translation: the block's checksum when it was translated.
type Translation = u64;

/// The emulator: guest memory, the notifier of its address space, the block cache.
struct Emulator {
    memory: RwLock<Vec<u8>>,
    /// Interval subscriptions; the payload is the block's number.
    notifier: Notifier<u64>,
    cache: Mutex<Cache>,
    retries: AtomicU64,
}

#[derive(Default)]
struct Cache {
    /// Block number -> its subscription (made on the first miss, kept for the program's life).
    subs: HashMap<u64, SubKey>,
    /// Block number -> its translation, while valid.
    blocks: HashMap<u64, Translation>,
}

impl Emulator {
    fn new() -> Self {
        let size = usize::try_from(BLOCK * BLOCKS).expect("guest memory fits in usize");
        Self {
            memory: RwLock::new((0..=u8::MAX).cycle().take(size).collect()),
            notifier: Notifier::new(),
            cache: Mutex::new(Cache::default()),
            retries: AtomicU64::new(0),
        }
    }

    /// The translation of `block` as memory is now.
    fn translate(&self, block: u64) -> Translation {
        let memory = self.memory.read().expect("memory lock");
        let lo = usize::try_from(block * BLOCK).expect("in memory");
        let hi = usize::try_from((block + 1) * BLOCK).expect("in memory");
        memory[lo..hi].iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// The executor's lookup: the cached translation, or a fresh one committed only when no
    /// invalidation overlapped the block since `read_begin` (the read side, R25-R28).
    fn lookup(&self, block: u64) -> Result<Translation, Error> {
        let key = {
            let mut cache = self.cache.lock().expect("cache lock");
            if let Some(&t) = cache.blocks.get(&block) {
                return Ok(t);
            }
            if let Some(&key) = cache.subs.get(&block) {
                key
            } else {
                let iv = Interval::from_start_length(block * BLOCK, BLOCK)?;
                let (key, _) = self.notifier.lock().insert(iv, false, block)?;
                cache.subs.insert(block, key);
                key
            }
        };
        loop {
            let (seq, must_wait) = self.notifier.lock().read_begin(key)?;
            if must_wait {
                assert!(
                    self.notifier.wait_seq_change(seq, WAIT),
                    "an epoch never closed"
                );
            }
            let translation = self.translate(block); // no lock held while translating
            thread::yield_now(); // a real translator takes a while: let the patcher in
            let mut cache = self.cache.lock().expect("cache lock");
            // read_retry, under the cache lock that the patcher holds while it sets the seq.
            let now = self.notifier.lock().sub(key).map(|(_, sub)| sub.seq());
            if now.ok_or(Error::NotSubscribed)? == seq {
                cache.blocks.insert(block, translation);
                return Ok(translation);
            }
            self.retries.fetch_add(1, Ordering::Relaxed); // memory changed under us: again
        }
    }

    /// The patcher's write: invalidate the bytes, then change them (R12-R17).
    fn write(&self, address: u64, bytes: &[u8]) -> Result<(), Error> {
        let len = u64::try_from(bytes.len()).expect("short write");
        let range = Interval::from_range(address, address + len)?;
        let mut hits = Vec::new();
        let started = self.notifier.lock().start(range, |key, _, sub, cur_seq| {
            hits.push((key, sub.payload, cur_seq));
        });
        debug_assert_eq!(started.hits, hits.len());
        for (key, block, cur_seq) in hits {
            let mut cache = self.cache.lock().expect("cache lock");
            if let Some((_, sub)) = self.notifier.lock().sub_mut(key) {
                sub.set_seq(cur_seq); // readers of this block must retry (R14)
            }
            cache.blocks.remove(&block);
        }
        {
            // The coherence check: nothing we are about to change is cached any more.
            let cache = self.cache.lock().expect("cache lock");
            for block in range.start() / BLOCK..=range.last() / BLOCK {
                assert!(!cache.blocks.contains_key(&block), "block {block} is stale");
            }
        }
        {
            let mut memory = self.memory.write().expect("memory lock");
            let at = usize::try_from(address).expect("in memory");
            memory[at..at + bytes.len()].copy_from_slice(bytes);
        }
        let ended = self.notifier.lock().end()?;
        if let Ended::Closed { .. } = ended {
            self.notifier.wake_all(); // after unlocking (R17, R77)
        }
        Ok(())
    }
}

/// A small deterministic generator (xorshift64*), so that runs are repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn main() -> Result<(), Error> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map_or(0.5, |s| s.parse().expect("SECONDS must be a number"));
    let emu = Arc::new(Emulator::new());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);

    let executor = {
        let (emu, stop) = (Arc::clone(&emu), Arc::clone(&stop));
        thread::spawn(move || -> Result<u64, Error> {
            let (mut rng, mut lookups) = (Rng(0x9e37_79b9_7f4a_7c15), 0);
            while !stop.load(Ordering::Relaxed) {
                emu.lookup(rng.below(BLOCKS))?;
                lookups += 1;
            }
            Ok(lookups)
        })
    };

    let (mut rng, mut writes) = (Rng(0x2545_f491_4f6c_dd1d), 0_u64);
    while Instant::now() < deadline {
        // A patch of 1..=96 bytes anywhere: it may straddle two blocks.
        let len = 1 + rng.below(96);
        let address = rng.below(BLOCK * BLOCKS - len);
        let byte = u8::try_from(rng.below(256)).expect("below 256");
        emu.write(address, &vec![byte; usize::try_from(len).expect("short")])?;
        writes += 1;
        thread::sleep(Duration::from_micros(10)); // code is patched far less often than run
    }
    stop.store(true, Ordering::Relaxed);
    let lookups = executor.join().expect("the executor thread panicked")?;

    let cache = emu.cache.lock().expect("cache lock");
    for (&block, &translation) in &cache.blocks {
        assert_eq!(
            translation,
            emu.translate(block),
            "block {block} is stale at the end"
        );
    }
    let state = emu.notifier.lock();
    assert_eq!(
        (state.active(), state.seq() % 2),
        (0, 0),
        "every epoch closed"
    );
    println!(
        "{writes} patches, {lookups} lookups, {} retries forced, {} blocks cached, seq {}: \
         every cached block matches memory",
        emu.retries.load(Ordering::Relaxed),
        cache.blocks.len(),
        state.seq(),
    );
    Ok(())
}
