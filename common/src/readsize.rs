//! How big the next read buffer should be: small for a tunnel that trickles, large for
//! one that streams.
//!
//! Buffers are taken only while data flows (and given back when a read would block), so
//! their size is decided afresh each time. Starting small keeps a burst of mostly idle
//! tunnels (a browser's, or thousands waking at once to read their EOF) from taking a
//! large buffer each; a read that fills its buffer quadruples the next one, so a bulk
//! stream reaches full size (1 MiB) in four reads.

use bytes::BytesMut;

/// The first read of a quiet direction.
pub const MIN_READ: usize = 4 * 1024;

/// The size of the next read buffer for one direction of a stream.
#[derive(Debug, Clone, Copy)]
pub struct ReadSize {
    // u32: a tunnel holds two of these per direction pair, and sizes stay far below 4 GiB.
    next: u32,
    max: u32,
}

impl ReadSize {
    /// Starts at [`MIN_READ`] and grows up to `max`.
    pub const fn new(max: usize) -> Self {
        let max = if max < u32::MAX as usize {
            max as u32
        } else {
            u32::MAX
        };
        let min = MIN_READ as u32;
        ReadSize {
            next: if min < max { min } else { max },
            max,
        }
    }

    /// Makes room in `buf` for the next read of at least `at_least` bytes.
    pub fn reserve(&self, buf: &mut BytesMut, at_least: usize) {
        let want = (self.next as usize).max(at_least);
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
    }

    /// Learns from a read that returned `n` bytes into `room` bytes of space: a full buffer
    /// asks for a bigger one, a read that used little of it for a smaller one.
    pub fn record(&mut self, n: usize, room: usize) {
        let next = self.next as usize;
        if n >= room {
            self.next = self.next.saturating_mul(4).min(self.max);
        } else if n < next / 8 {
            self.next = (self.next / 2).max((MIN_READ as u32).min(self.max));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_on_full_reads_and_shrinks_on_small_ones() {
        let mut r = ReadSize::new(256 * 1024);
        assert_eq!(r.next as usize, MIN_READ);
        for want in [16 * 1024, 64 * 1024, 256 * 1024, 256 * 1024] {
            r.record(r.next as usize, r.next as usize);
            assert_eq!(r.next as usize, want);
        }
        // A half-full read keeps the size; tiny reads halve it down to the floor.
        r.record(100 * 1024, 256 * 1024);
        assert_eq!(r.next as usize, 256 * 1024);
        for _ in 0..20 {
            r.record(10, 256 * 1024);
        }
        assert_eq!(r.next as usize, MIN_READ);
    }

    #[test]
    fn reserve_makes_room_for_the_larger_of_hint_and_need() {
        let r = ReadSize::new(64 * 1024);
        let mut buf = BytesMut::new();
        r.reserve(&mut buf, 10_000);
        assert!(buf.capacity() >= 10_000);
        let mut small = BytesMut::new();
        r.reserve(&mut small, 1);
        assert!(small.capacity() >= MIN_READ && small.capacity() < 64 * 1024);
    }
}
