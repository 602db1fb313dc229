//! Stack painting: QEMU's `CONFIG_DEBUG_STACK_USAGE`, as plain slice routines.
//!
//! Painting fills a stack's usable words with [`PAINT_WORD`]; after the
//! coroutine has run, the lowest word that no longer holds the pattern marks
//! the deepest point its frames ever reached. The routines here work on word
//! slices so that they can be tested on ordinary heap memory; `GuardedStack`
//! owns the unsafe step of viewing its mapping as such a slice.
//!
//! The measurement can under-count by a word or so when a frame happens to
//! store the pattern value itself at its lowest live slot, and it cannot see a
//! frame that reserved space without writing to it. Both are acceptable for a
//! sizing aid, which is all this is.

/// The pattern written into every usable word: QEMU's `0xdeadbeaf`, repeated
/// to fill a word on 64-bit hosts (and truncated to it on 32-bit ones, which
/// is exactly QEMU's value).
pub(super) const PAINT_WORD: usize = 0xdead_beaf_dead_beaf_u64 as usize;

/// How many words [`used_bytes`] compares per step: one 64-byte cache line on
/// 64-bit hosts. The OR-reduction over a fixed-size chunk has no early exit,
/// so the compiler can vectorise it; only the final chunk is searched word by
/// word.
const CHUNK_WORDS: usize = 8;

/// Fills every word with [`PAINT_WORD`].
///
/// This touches every page of the slice, so on a lazily committed stack it
/// commits the whole mapping; that cost is why painting is opt-in.
pub(super) fn fill(words: &mut [usize]) {
    words.fill(PAINT_WORD);
}

/// Returns how many bytes, counted down from the high end of `words`, have
/// been overwritten since [`fill`]: the distance from the top to the lowest
/// word that no longer holds [`PAINT_WORD`], or 0 if every word still does.
///
/// The scan runs upward from the low end because a stack grows down: the
/// untouched, still-painted region is at the bottom, and the first mismatch
/// found from below is the deepest point ever reached.
pub(super) fn used_bytes(words: &[usize]) -> usize {
    let chunks = words.chunks_exact(CHUNK_WORDS);
    let tail_start = words.len() - chunks.remainder().len();
    let first_dirty_chunk = chunks
        .enumerate()
        .find(|(_, chunk)| chunk.iter().fold(0, |acc, &w| acc | (w ^ PAINT_WORD)) != 0)
        .map_or(tail_start, |(index, _)| index * CHUNK_WORDS);
    let first_dirty = words[first_dirty_chunk..]
        .iter()
        .position(|&w| w != PAINT_WORD)
        .map_or(words.len(), |offset| first_dirty_chunk + offset);
    (words.len() - first_dirty) * size_of::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A freshly painted slice reports no use at all.
    #[test]
    fn fresh_paint_is_unused() {
        let mut words = vec![0usize; 1024];
        fill(&mut words);
        assert_eq!(used_bytes(&words), 0);
    }

    /// Every depth, including ones that fall inside a chunk and in the
    /// non-chunk tail, is measured to the exact word.
    #[test]
    fn every_depth_is_exact() {
        // 8 * 5 + 3 words: five whole chunks and a three-word tail.
        let len = CHUNK_WORDS * 5 + 3;
        for dirty in 0..len {
            let mut words = vec![0usize; len];
            fill(&mut words);
            words[dirty] = 0;
            let expected = (len - dirty) * size_of::<usize>();
            assert_eq!(used_bytes(&words), expected, "dirty word at index {dirty}");
        }
    }

    /// The lowest mismatch wins even when higher words still hold the
    /// pattern (a frame may store the pattern value, or skip slots).
    #[test]
    fn lowest_mismatch_wins() {
        let mut words = vec![0usize; 64];
        fill(&mut words);
        words[40] = 1;
        words[20] = PAINT_WORD ^ 1;
        assert_eq!(used_bytes(&words), (64 - 20) * size_of::<usize>());
    }

    /// A mismatch in a single bit is caught: the comparison is exact.
    #[test]
    fn single_bit_difference_is_detected() {
        let mut words = vec![0usize; 16];
        fill(&mut words);
        words[3] ^= 1 << (usize::BITS - 1);
        assert_eq!(used_bytes(&words), 13 * size_of::<usize>());
    }

    /// An empty slice is trivially unused.
    #[test]
    fn empty_slice() {
        assert_eq!(used_bytes(&[]), 0);
    }
}
