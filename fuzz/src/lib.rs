//! The fuzz oracle: decode arbitrary bytes into a sequence of protocol operations and run them
//! through the brute-force model shared with the model test (`tests/support/protocol_model.rs`,
//! included here by path), which runs each on the real `mmn_fast::protocol::Protocol` too and
//! panics at the first difference. The same function backs the libFuzzer target
//! (`fuzz_targets/protocol.rs`) and the corpus/random replay test (`tests/replay.rs`, plain
//! `cargo test`).

#[path = "../../tests/support/protocol_model.rs"]
mod model;

use mmn_fast::Interval;
use model::{Op, Pair};

/// Pulls bytes off the input; zeros once it runs out (so every input decodes).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One operation. The corpus was grown before `Batch` took four of the eight values of the
    /// last group (they decoded as the other four): those inputs now run batches instead.
    fn op(&mut self) -> Op {
        match self.u8() % 12 {
            // Insert over a small address space (overlaps are common), sometimes at the top.
            0..=2 => {
                let (s, l, flags) = (self.u8(), self.u8(), self.u8());
                let (start, length) = if flags & 0x40 != 0 {
                    let length = u64::from(l % 4) + 1;
                    (u64::MAX - (length - 1) - u64::from(s % 2), length)
                } else {
                    (u64::from(s % 64) * 0x100, u64::from(l % 8 + 1) * 0x80)
                };
                Op::Insert {
                    start,
                    length,
                    native: flags & 1 == 1,
                }
            }
            3..=4 => Op::Start {
                q: self.range(),
                set_mask: self.u8(),
            },
            5..=6 => Op::End,
            7..=8 => Op::Remove { pick: self.u8() },
            9 => Op::ReadBegin { pick: self.u8() },
            10 => Op::ReadRetry { pick: self.u8() },
            _ => match self.u8() % 8 {
                0 => Op::Drain,
                1 => Op::Payloads,
                2 => Op::Release,
                3 => Op::Conversions {
                    a: self.u64(),
                    b: self.u64(),
                },
                count => Op::Batch {
                    queries: [self.range(), self.range(), self.range(), self.range()],
                    count: count - 3,
                    set_mask: self.u8(),
                },
            },
        }
    }

    /// A range over the same small address space, sometimes up to the top.
    fn range(&mut self) -> Interval {
        let (s, l) = (self.u8(), self.u8());
        let start = u64::from(s) * 0x80;
        let end = if l == 0xff {
            u64::MAX
        } else {
            start + u64::from(l % 16 + 1) * 0x80
        };
        Interval::from_range(start, end).unwrap()
    }
}

/// Run one input. Panics on the first difference between the protocol and the model.
pub fn run(data: &[u8]) {
    let mut bytes = Bytes(data);
    let mut pair = Pair::new();
    let mut steps = 0;
    while !bytes.is_empty() && steps < 512 {
        steps += 1;
        pair.apply(bytes.op());
    }
    pair.quiesce();
}
