//! [`BPlusTree::check_invariants`]: every structural invariant, checked from scratch.

use std::fmt::Write as _;

use super::slots::View;
use super::{BPlusTree, MAX_DEPTH, NIL};

/// What the walk has seen so far.
struct Walk {
    /// Per slot: reached in a leaf.
    slots: Vec<bool>,
    leaves: Vec<bool>,
    inners: Vec<bool>,
    /// Intervals reached, and the start of the last one (keys must not decrease).
    count: usize,
    last_start: u64,
}

impl<V, const L: usize, const F: usize> BPlusTree<V, L, F> {
    /// Check every structural invariant; O(n) time and memory. For tests and debug builds.
    ///
    /// Checks: the root and height agree with `len` (and stay within `MAX_DEPTH`); every node
    /// is reached once, from the parent its `parent` field names, all leaves at depth `height`;
    /// node sizes (non-empty, a root above another inner node with two children or more, a
    /// `min_len` off the leftmost and rightmost paths); starts never decrease in order;
    /// every inner entry equals its child's `(smallest start, largest last)`, and the span the
    /// root's; every leaf entry is an occupied slot that names that leaf, reached once; `len`;
    /// free node lists hold exactly the unreached nodes; detached slots are exactly the
    /// detached map's keys; the slot free list (vacant slots only, no cycle, every vacant slot
    /// on it or retired, a retired slot neither on it nor linked to another).
    ///
    /// # Errors
    /// A description of the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut walk = Walk {
            slots: vec![false; self.slots.len()],
            leaves: vec![false; self.leaves.len()],
            inners: vec![false; self.inners.len()],
            count: 0,
            last_start: 0,
        };
        if self.root == NIL {
            if self.height != 0 || self.len != 0 {
                return Err(format!(
                    "no root but height {} and len {}",
                    self.height, self.len
                ));
            }
        } else {
            if self.height == 0 || self.height > MAX_DEPTH {
                return Err(format!("height {} out of range", self.height));
            }
            let summary = self.check_node(self.height, self.root, NIL, (true, true), &mut walk)?;
            if summary != self.span {
                return Err(format!(
                    "span is {:?} but the root summarises {summary:?}",
                    self.span
                ));
            }
        }
        if walk.count != self.len {
            return Err(format!(
                "len is {} but {} intervals are reachable",
                self.len, walk.count
            ));
        }
        Self::check_free_nodes("leaf", &self.free_leaves, &mut walk.leaves)?;
        Self::check_free_nodes("inner", &self.free_inners, &mut walk.inners)?;
        self.check_slots(&walk.slots)
    }

    /// Check the subtree of `node` at `level` under `parent`; `ends` says whether it lies on
    /// the leftmost and rightmost paths. Returns its summary.
    fn check_node(
        &self,
        level: usize,
        node: u32,
        parent: u32,
        ends: (bool, bool),
        walk: &mut Walk,
    ) -> Result<(u64, u64), String> {
        let (kind, marks, arena_len) = if level == 0 {
            ("leaf", &mut walk.leaves, self.leaves.len())
        } else {
            ("inner", &mut walk.inners, self.inners.len())
        };
        if node as usize >= arena_len {
            return Err(format!("{kind} {node} beyond its arena"));
        }
        if std::mem::replace(&mut marks[node as usize], true) {
            return Err(format!("{kind} {node} reached twice"));
        }
        if self.parent(level, node) != parent {
            return Err(format!(
                "{kind} {node} names parent {} but hangs under {parent}",
                self.parent(level, node)
            ));
        }
        let len = self.node_len(level, node);
        let is_root = parent == NIL;
        let least = if is_root && level > 1 {
            2
        } else if ends.0 || ends.1 {
            1
        } else {
            Self::min_len(level).max(1)
        };
        if len < least {
            return Err(format!(
                "{kind} {node} holds {len} entries, fewer than {least}"
            ));
        }
        if level == 0 {
            self.check_leaf(node, walk)?;
        } else {
            let inner = &self.inners[node as usize];
            for i in 0..len {
                let child = inner.ids[i];
                let child_ends = (ends.0 && i == 0, ends.1 && i + 1 == len);
                let got = self.check_node(level - 1, child, node, child_ends, walk)?;
                let want = (inner.keys[i], inner.lasts[i]);
                if got != want {
                    return Err(format!(
                        "inner {node} entry {i} says {want:?} but child {child} holds {got:?}"
                    ));
                }
            }
        }
        Ok(self.summary(level, node))
    }

    fn check_leaf(&self, leaf: u32, walk: &mut Walk) -> Result<(), String> {
        let node = &self.leaves[leaf as usize];
        for i in 0..node.len() {
            let (start, last, slot) = (node.keys[i], node.lasts[i], node.ids[i]);
            if start < walk.last_start {
                return Err(format!(
                    "leaf {leaf} entry {i} starts at {start:#x}, before {:#x}",
                    walk.last_start
                ));
            }
            if start > last {
                return Err(format!("leaf {leaf} entry {i} ends before it starts"));
            }
            match self.slots.view(slot) {
                Some(View::Occupied(e)) if e.leaf == leaf => {}
                Some(View::Occupied(e)) => {
                    return Err(format!("slot {slot} in leaf {leaf} names leaf {}", e.leaf))
                }
                _ => return Err(format!("leaf {leaf} holds vacant or unknown slot {slot}")),
            }
            if std::mem::replace(&mut walk.slots[slot as usize], true) {
                return Err(format!("slot {slot} reached twice"));
            }
            walk.last_start = start;
            walk.count += 1;
        }
        Ok(())
    }

    /// The free list of one arena holds exactly its unreached nodes.
    fn check_free_nodes(kind: &str, free: &[u32], marks: &mut [bool]) -> Result<(), String> {
        for &i in free {
            match marks.get_mut(i as usize) {
                Some(mark) if !*mark => *mark = true,
                Some(_) => return Err(format!("free {kind} {i} is in use or listed twice")),
                None => return Err(format!("free {kind} {i} beyond its arena")),
            }
        }
        let mut lost = String::new();
        for (i, _) in marks.iter().enumerate().filter(|(_, m)| !**m) {
            let _ = write!(lost, " {i}");
        }
        if lost.is_empty() {
            Ok(())
        } else {
            Err(format!("{kind} nodes neither reachable nor free:{lost}"))
        }
    }

    /// Slots against the walk, the detached map and the free list.
    fn check_slots(&self, reached: &[bool]) -> Result<(), String> {
        let mut on_free_list = vec![false; self.slots.len()];
        let mut i = self.slots.free_head;
        while i != NIL {
            match self.slots.view(i) {
                Some(View::Vacant { generation, .. }) if generation == u32::MAX => {
                    return Err(format!("retired slot {i} on the free list"));
                }
                Some(View::Vacant { next_free, .. }) => {
                    if std::mem::replace(&mut on_free_list[i as usize], true) {
                        return Err(format!("free list cycles at slot {i}"));
                    }
                    i = next_free;
                }
                Some(View::Occupied(_)) => {
                    return Err(format!("occupied slot {i} on the free list"))
                }
                None => return Err(format!("free list reaches slot {i} beyond the arena")),
            }
        }
        for (i, &reached) in (0..).zip(reached) {
            let in_map = self.detached.contains_key(&i);
            let Some(view) = self.slots.view(i) else {
                return Err(format!("slot {i} beyond the arena"));
            };
            let listed = on_free_list[i as usize];
            match view {
                View::Occupied(e) if e.leaf != NIL && !reached => {
                    return Err(format!("attached slot {i} unreachable"));
                }
                View::Occupied(e) if (e.leaf == NIL) != in_map => {
                    return Err(format!(
                        "slot {i}: detached {} but in the detached map {in_map}",
                        e.leaf == NIL
                    ));
                }
                View::Vacant { generation, .. } if !listed && generation != u32::MAX => {
                    return Err(format!("vacant slot {i} neither free nor retired"));
                }
                View::Vacant { next_free, .. } if !listed && next_free != NIL => {
                    return Err(format!("retired slot {i} links to slot {next_free}"));
                }
                View::Vacant { .. } if in_map => {
                    return Err(format!("vacant slot {i} in the detached map"));
                }
                _ => {}
            }
        }
        if let Some((&k, _)) = self
            .detached
            .range(u32::try_from(self.slots.len()).unwrap_or(NIL)..)
            .next()
        {
            return Err(format!("detached map names slot {k} beyond the arena"));
        }
        Ok(())
    }
}
