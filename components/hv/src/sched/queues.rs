//! Run-queue building blocks whose every operation is O(1) or O(log n) in
//! the number of vCPUs, and which allocate only when made: a scheduler
//! builds them in `new` and its hot path never scans all vCPUs (issue 16).
//! Each counts its steps, so host tests can bound the work per event.

use super::VcpuId;
use alloc::vec::Vec;

/// Not in any list or heap.
const NONE: u32 = u32::MAX;

/// Ends of one FIFO list.
#[derive(Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
    len: u32,
}

/// Any number of FIFO lists of vCPUs, each vCPU in at most one: doubly
/// linked through arrays indexed by vCPU, so pushing, popping and taking
/// a vCPU out of the middle are O(1).
pub struct RunQueues {
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Indexed by vCPU: the list it is in, or `NONE`.
    list_of: Vec<u32>,
    ends: Vec<Ends>,
    /// vCPUs in all the lists together.
    total: usize,
    steps: u64,
}

impl RunQueues {
    /// `lists` empty lists for vCPUs `0..vcpus`.
    pub fn new(vcpus: usize, lists: usize) -> Self {
        RunQueues {
            next: alloc::vec![NONE; vcpus],
            prev: alloc::vec![NONE; vcpus],
            list_of: alloc::vec![NONE; vcpus],
            ends: alloc::vec![
                Ends {
                    head: NONE,
                    tail: NONE,
                    len: 0
                };
                lists
            ],
            total: 0,
            steps: 0,
        }
    }

    /// Appends `vcpu` to `list`; one already in a list (or unknown) is
    /// left where it is: a vCPU is queued once.
    pub fn push_back(&mut self, list: usize, vcpu: VcpuId) {
        self.steps += 1;
        let v = vcpu.0 as usize;
        if self.list_of.get(v) != Some(&NONE) || list >= self.ends.len() {
            return;
        }
        let ends = &mut self.ends[list];
        self.prev[v] = ends.tail;
        self.next[v] = NONE;
        match ends.tail {
            NONE => ends.head = vcpu.0,
            tail => self.next[tail as usize] = vcpu.0,
        }
        ends.tail = vcpu.0;
        ends.len += 1;
        self.list_of[v] = list as u32;
        self.total += 1;
    }

    /// The first of `list`.
    pub fn front(&self, list: usize) -> Option<VcpuId> {
        let head = self.ends.get(list)?.head;
        (head != NONE).then_some(VcpuId(head))
    }

    /// Takes out the first of `list`.
    pub fn pop_front(&mut self, list: usize) -> Option<VcpuId> {
        let vcpu = self.front(list)?;
        self.remove(vcpu);
        Some(vcpu)
    }

    /// Takes `vcpu` out of whatever list holds it; the list it was in.
    pub fn remove(&mut self, vcpu: VcpuId) -> Option<usize> {
        self.steps += 1;
        let v = vcpu.0 as usize;
        let list = *self.list_of.get(v)?;
        if list == NONE {
            return None;
        }
        let (prev, next) = (self.prev[v], self.next[v]);
        let ends = &mut self.ends[list as usize];
        match prev {
            NONE => ends.head = next,
            prev => self.next[prev as usize] = next,
        }
        match next {
            NONE => ends.tail = prev,
            next => self.prev[next as usize] = prev,
        }
        ends.len -= 1;
        self.list_of[v] = NONE;
        self.total -= 1;
        Some(list as usize)
    }

    /// The list that holds `vcpu`.
    pub fn list_of(&self, vcpu: VcpuId) -> Option<usize> {
        self.list_of
            .get(vcpu.0 as usize)
            .filter(|&&l| l != NONE)
            .map(|&l| l as usize)
    }

    pub fn len(&self, list: usize) -> usize {
        self.ends.get(list).map_or(0, |e| e.len as usize)
    }

    pub fn is_empty(&self, list: usize) -> bool {
        self.len(list) == 0
    }

    /// vCPUs in all the lists.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Steps taken so far (links followed or written), for tests.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

/// A min-heap of vCPUs by key, each vCPU in it at most once, with its
/// place kept per vCPU: the least is read in O(1); pushing, re-keying and
/// taking out any vCPU are O(log n). Equal keys go to the lower vCPU.
pub struct VcpuHeap<K> {
    heap: Vec<(K, u32)>,
    /// Indexed by vCPU: its place in `heap`, or `NONE`.
    slot: Vec<u32>,
    steps: u64,
}

impl<K: Ord + Copy> VcpuHeap<K> {
    /// Room for vCPUs `0..vcpus`, allocated once.
    pub fn new(vcpus: usize) -> Self {
        Self::with_room(vcpus, vcpus)
    }

    /// For vCPUs `0..vcpus` of which at most `room` are in at once (more
    /// would allocate).
    pub fn with_room(vcpus: usize, room: usize) -> Self {
        VcpuHeap {
            heap: Vec::with_capacity(room),
            slot: alloc::vec![NONE; vcpus],
            steps: 0,
        }
    }

    /// Puts `vcpu` in with `key`, or moves it to `key` if it is in;
    /// unknown vCPUs are ignored.
    pub fn set(&mut self, vcpu: VcpuId, key: K) {
        let v = vcpu.0 as usize;
        match self.slot.get(v) {
            None => {}
            Some(&NONE) => {
                self.heap.push((key, vcpu.0));
                let last = self.heap.len() - 1;
                self.slot[v] = last as u32;
                self.sift_up(last);
            }
            Some(&slot) => {
                let slot = slot as usize;
                self.heap[slot].0 = key;
                let slot = self.sift_up(slot);
                self.sift_down(slot);
            }
        }
    }

    /// Takes `vcpu` out; its key, if it was in.
    pub fn remove(&mut self, vcpu: VcpuId) -> Option<K> {
        let slot = *self.slot.get(vcpu.0 as usize)?;
        (slot != NONE).then(|| self.remove_at(slot as usize))
    }

    /// The least key and its vCPU.
    pub fn peek(&self) -> Option<(K, VcpuId)> {
        self.heap.first().map(|&(k, v)| (k, VcpuId(v)))
    }

    /// Takes out the least.
    pub fn pop(&mut self) -> Option<(K, VcpuId)> {
        let (key, vcpu) = self.peek()?;
        self.remove_at(0);
        Some((key, vcpu))
    }

    pub fn contains(&self, vcpu: VcpuId) -> bool {
        self.slot.get(vcpu.0 as usize).is_some_and(|&s| s != NONE)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Steps taken so far (compares and moves), for tests.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn remove_at(&mut self, slot: usize) -> K {
        let last = self.heap.len() - 1;
        self.swap(slot, last);
        let (key, gone) = self.heap.pop().expect("slot is in the heap");
        self.slot[gone as usize] = NONE;
        if slot < last {
            let slot = self.sift_up(slot);
            self.sift_down(slot);
        }
        key
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.steps += 1;
        self.heap.swap(a, b);
        self.slot[self.heap[a].1 as usize] = a as u32;
        self.slot[self.heap[b].1 as usize] = b as u32;
    }

    /// Moves the entry at `slot` up to its place; where it ends.
    fn sift_up(&mut self, mut slot: usize) -> usize {
        while slot > 0 {
            self.steps += 1;
            let parent = (slot - 1) / 2;
            if self.heap[parent] <= self.heap[slot] {
                break;
            }
            self.swap(parent, slot);
            slot = parent;
        }
        slot
    }

    fn sift_down(&mut self, mut slot: usize) {
        loop {
            self.steps += 1;
            let (left, right) = (2 * slot + 1, 2 * slot + 2);
            let mut least = slot;
            if left < self.heap.len() && self.heap[left] < self.heap[least] {
                least = left;
            }
            if right < self.heap.len() && self.heap[right] < self.heap[least] {
                least = right;
            }
            if least == slot {
                return;
            }
            self.swap(slot, least);
            slot = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keep_fifo_order_and_take_out_from_the_middle() {
        let mut q = RunQueues::new(6, 2);
        for v in [3, 1, 4, 0] {
            q.push_back(0, VcpuId(v));
        }
        q.push_back(1, VcpuId(5));
        q.push_back(1, VcpuId(3)); // already queued: stays in list 0
        assert_eq!(q.remove(VcpuId(4)), Some(0));
        assert_eq!(q.remove(VcpuId(4)), None);
        assert_eq!((q.len(0), q.len(1), q.total()), (3, 1, 4));
        assert_eq!(q.list_of(VcpuId(5)), Some(1));
        let order: Vec<_> = core::iter::from_fn(|| q.pop_front(0))
            .map(|v| v.0)
            .collect();
        assert_eq!(order, [3, 1, 0]);
        assert!(q.is_empty(0));
        q.push_back(0, VcpuId(1));
        assert_eq!(q.front(0), Some(VcpuId(1)));
        assert_eq!(q.pop_front(1), Some(VcpuId(5)));
        assert_eq!(q.total(), 1);
    }

    #[test]
    fn the_heap_gives_the_least_key_and_takes_out_any() {
        let mut h = VcpuHeap::new(8);
        for (v, k) in [(0, 50), (1, 10), (2, 30), (3, 10), (4, 70), (5, 20)] {
            h.set(VcpuId(v), k);
        }
        assert_eq!(h.remove(VcpuId(4)), Some(70));
        h.set(VcpuId(2), 5);
        h.set(VcpuId(2), 40);
        h.set(VcpuId(9), 1); // unknown
        let order: Vec<_> = core::iter::from_fn(|| h.pop())
            .map(|(k, v)| (k, v.0))
            .collect();
        assert_eq!(order, [(10, 1), (10, 3), (20, 5), (40, 2), (50, 0)]);
    }
}
