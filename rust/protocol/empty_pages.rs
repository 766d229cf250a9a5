//! Known-empty ranges by page: a direct-mapped cache that answers a start within one page
//! without a walk.
//!
//! Why: an emulator's guest writes mostly hit nothing, and they come back to the same few
//! hundred pages (the stack, a heap, a frame buffer) in no useful order; a software TLB
//! remembers such pages the same way. The protocol's one known-empty range serves runs of
//! stores through one gap and repeats of one range, multi-page ones included; this cache
//! serves starts that come back to scattered pages, whatever came between.
//!
//! Each page maps to one entry (`page % ENTRIES`), which holds a range inside that page known
//! to overlap no subscription: the range of the page's last start that walked and hit nothing,
//! or, once a second start in the page missed it, the whole part of the page the gap around
//! that start covers. Entries never reach past their page, so an attach finds every entry it
//! overlaps among the entries of its own pages.
//!
//! Exactness: an entry is written only after a walk or a gap descent found nothing over it,
//! and every attach forgets the entries it overlaps; removals only take intervals away, so they
//! keep the cache. `Protocol::check_invariants` walks every entry held.

use crate::interval::Interval;

/// Bytes per page: the kernel's 4 KiB `PAGE_SIZE`, the unit of a guest's mappings.
pub const PAGE_SHIFT: u32 = 12;

/// log2 of the entries: 4096 of them, 16 MiB of contiguous pages with no two in one entry, and
/// a few percent of a few hundred scattered pages sharing one; 32 KiB per address space,
/// allocated at the first range remembered.
const ENTRY_BITS: u32 = 12;
const ENTRIES: usize = 1 << ENTRY_BITS;

/// The bits of an offset in a page.
const OFFSET: u64 = (1 << PAGE_SHIFT) - 1;

/// An entry that holds nothing: its first offset is above its last, which no range has.
const NONE: u64 = OFFSET << PAGE_SHIFT;

/// The cache; see the module docs.
#[derive(Debug, Default)]
pub struct EmptyPages {
    /// Each entry packs, from the top: the page's bits above the entry index (40, as pages
    /// have 52 bits), then the offsets in the page of the range's first and last byte (12
    /// each); or [`NONE`]. `None` until the first remember.
    entries: Option<Box<[u64; ENTRIES]>>,
    /// Entries that hold a range: an attach into an empty cache does nothing.
    held: usize,
}

/// The whole of `page`.
fn page_range(page: u64) -> Interval {
    Interval::from_start_length(page << PAGE_SHIFT, 1 << PAGE_SHIFT)
        .expect("a page is a valid interval")
}

impl EmptyPages {
    /// The page `q` lies in, or `None` when it spans two or more.
    #[inline]
    pub fn page_of(q: Interval) -> Option<u64> {
        let page = q.start() >> PAGE_SHIFT;
        (page == q.last() >> PAGE_SHIFT).then_some(page)
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "the remainder is below ENTRIES"
    )]
    const fn index(page: u64) -> usize {
        (page % ENTRIES as u64) as usize
    }

    /// The range `entry` (the entry of `page`'s index) holds, if it holds one of `page`.
    #[inline]
    fn held_in(entry: u64, page: u64) -> Option<Interval> {
        let (first, last) = ((entry >> PAGE_SHIFT) & OFFSET, entry & OFFSET);
        let base = page << PAGE_SHIFT;
        (entry >> (2 * PAGE_SHIFT) == page >> ENTRY_BITS && entry != NONE && first <= last)
            .then(|| Interval::new(base | first, base | last).expect("first <= last in one page"))
    }

    /// The range known empty in `page`, if its entry holds one of that page.
    #[inline]
    pub fn get(&self, page: u64) -> Option<Interval> {
        Self::held_in(self.entries.as_ref()?[Self::index(page)], page)
    }

    /// `empty` overlaps no subscription (the caller has just looked) and overlaps `page`:
    /// remember its part in `page`, in place of what that page's entry held.
    pub fn remember(&mut self, page: u64, empty: Interval) {
        let whole = page_range(page);
        debug_assert!(empty.overlaps(whole));
        let first = empty.start().max(whole.start()) & OFFSET;
        let last = empty.last().min(whole.last()) & OFFSET;
        let entries = self.entries.get_or_insert_with(|| {
            let heap = vec![NONE; ENTRIES].into_boxed_slice(); // never on the stack
            heap.try_into().expect("ENTRIES long")
        });
        let entry = &mut entries[Self::index(page)];
        if *entry == NONE {
            self.held += 1;
        }
        *entry = (page >> ENTRY_BITS) << (2 * PAGE_SHIFT) | first << PAGE_SHIFT | last;
    }

    /// `iv` is about to enter the tree: forget every entry it overlaps.
    pub fn forget(&mut self, iv: Interval) {
        let Some(entries) = self.entries.as_mut().filter(|_| self.held > 0) else {
            return;
        };
        let (first, last) = (iv.start() >> PAGE_SHIFT, iv.last() >> PAGE_SHIFT);
        if last - first >= ENTRIES as u64 - 1 {
            entries.fill(NONE); // it covers a page of every entry
            self.held = 0;
            return;
        }
        // An entry's range lies in its own page, which is one of `iv`'s pages when they
        // overlap: looking at the entries of `iv`'s pages finds them all.
        for page in first..=last {
            let entry = &mut entries[Self::index(page)];
            if Self::held_in(*entry, page).is_some_and(|held| held.overlaps(iv)) {
                *entry = NONE;
                self.held -= 1;
            }
        }
    }

    /// The ranges held (for `check_invariants`).
    pub fn ranges(&self) -> impl Iterator<Item = Interval> + '_ {
        self.entries
            .iter()
            .flat_map(|entries| entries.iter().enumerate())
            .filter_map(|(index, &entry)| {
                let page = (entry >> (2 * PAGE_SHIFT)) << ENTRY_BITS | index as u64;
                Self::held_in(entry, page)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = ENTRIES as u64;

    fn iv(start: u64, last: u64) -> Interval {
        Interval::new(start, last).unwrap()
    }

    #[test]
    fn a_range_has_a_page_only_inside_one() {
        assert_eq!(EmptyPages::page_of(iv(0x1000, 0x1fff)), Some(1));
        assert_eq!(EmptyPages::page_of(iv(0x1ff8, 0x1fff)), Some(1));
        assert_eq!(EmptyPages::page_of(iv(0x1ff8, 0x2007)), None);
        assert_eq!(
            EmptyPages::page_of(iv(u64::MAX, u64::MAX)),
            Some(u64::MAX >> PAGE_SHIFT)
        );
    }

    #[test]
    fn an_entry_holds_the_part_of_its_page_it_was_given() {
        let mut c = EmptyPages::default();
        assert_eq!(c.get(7), None);
        c.forget(page_range(7)); // nothing held: nothing to do
        c.remember(7, iv(0x7100, 0x7107));
        assert_eq!(c.get(7), Some(iv(0x7100, 0x7107)));
        // A gap reaching past the page is clipped to it.
        c.remember(7, iv(0x3000, 0x9fff));
        assert_eq!(c.get(7), Some(page_range(7)));
        assert_eq!(c.held, 1);
        // Another page of the same entry takes it over; the first is no longer held.
        c.remember(7 + E, iv(0x6000, (7 + E) << PAGE_SHIFT));
        assert_eq!(c.get(7), None);
        assert_eq!(
            c.get(7 + E),
            Some(iv((7 + E) << PAGE_SHIFT, (7 + E) << PAGE_SHIFT))
        );
        assert_eq!(c.held, 1);
    }

    #[test]
    fn an_attach_forgets_exactly_the_entries_it_overlaps() {
        let mut c = EmptyPages::default();
        c.remember(5, iv(0x5800, 0x5fff));
        c.remember(6, page_range(6));
        c.remember(7, page_range(7));
        c.remember(8 + 3 * E, page_range(8 + 3 * E));
        // Page 5's entry holds only its upper half: an attach below that keeps it.
        c.forget(iv(0x5000, 0x57ff));
        assert_eq!((c.get(5), c.held), (Some(iv(0x5800, 0x5fff)), 4));
        // One from its last byte to the first of page 7 forgets pages 5 to 7; page 8's entry
        // holds a page it does not reach.
        c.forget(iv(0x5fff, 0x7000));
        assert_eq!((c.get(5), c.get(6), c.get(7)), (None, None, None));
        assert!(c.get(8 + 3 * E).is_some());
        assert_eq!(c.held, 1);
        // An attach over as many pages as there are entries forgets everything; one page
        // fewer goes entry by entry.
        c.remember(4, page_range(4));
        c.forget(iv(0, ((E - 1) << PAGE_SHIFT) - 1));
        assert_eq!(c.get(4), None);
        assert_eq!(c.ranges().collect::<Vec<_>>(), vec![page_range(8 + 3 * E)]);
        c.forget(iv(1 << 40, (1 << 40) + ((E - 1) << PAGE_SHIFT)));
        assert_eq!((c.held, c.ranges().count()), (0, 0));
    }

    #[test]
    fn the_top_page_of_the_address_space_is_held() {
        let mut c = EmptyPages::default();
        let top = u64::MAX >> PAGE_SHIFT;
        c.remember(top, iv(u64::MAX - 7, u64::MAX));
        assert_eq!(c.get(top), Some(iv(u64::MAX - 7, u64::MAX)));
        assert_eq!(c.ranges().next(), Some(iv(u64::MAX - 7, u64::MAX)));
        c.forget(iv(u64::MAX, u64::MAX));
        assert_eq!((c.get(top), c.held), (None, 0));
    }
}
