//! The one Memcheck client request that stack painting needs, which
//! corosensei's `stack::valgrind` module (registration only) does not expose.
//!
//! Because every `GuardedStack` is registered as a stack, Memcheck marks the
//! frames a coroutine leaves behind as inaccessible once its stack pointer
//! moves back up. Painting a reused stack, or scanning it for the high-water
//! mark, deliberately reads and writes those dead frames, so it first tells
//! Memcheck that the area is accessible and defined. Outside Valgrind the
//! request is a handful of no-op instructions.
//!
//! The instruction sequences are Valgrind's documented client-request
//! "preamble" (`valgrind.h`): rotations that add up to a full turn, followed by
//! a marker instruction the JIT recognises. Architectures without one here
//! simply skip the request.

/// Memcheck's `VG_USERREQ__MAKE_MEM_DEFINED`: `VG_USERREQ_TOOL_BASE('M', 'C')`
/// plus 2.
const MAKE_MEM_DEFINED: usize = (b'M' as usize) << 24 | (b'C' as usize) << 16 | 2;

/// Marks `len` bytes at `addr` as addressable and defined for Memcheck, so that
/// deliberately touching a dead frame's bytes is not reported.
///
/// This changes nothing in memory; outside Valgrind, or under another tool,
/// it does nothing at all.
pub(super) fn make_mem_defined(addr: usize, len: usize) {
    request(&[MAKE_MEM_DEFINED, addr, len, 0, 0, 0]);
}

/// Issues a client request with its six argument words; returns Valgrind's
/// answer, or 0 when not running under Valgrind.
#[cfg(target_arch = "x86_64")]
fn request(args: &[usize; 6]) -> usize {
    let result;
    // SAFETY: the four rotations of rdi add up to 128 bits, so rdi is left as
    // it was, and `xchg rbx, rbx` changes nothing: natively this is a no-op.
    // Under Valgrind the sequence makes the JIT read the six words at rax,
    // which `args` keeps alive and readable for the duration, and write its
    // answer to rdx. No stack is used.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") 0usize => result,
            in("rax") args.as_ptr(),
            options(nostack),
        );
    }
    result
}

/// Issues a client request with its six argument words; returns Valgrind's
/// answer, or 0 when not running under Valgrind.
#[cfg(target_arch = "aarch64")]
fn request(args: &[usize; 6]) -> usize {
    let result;
    // SAFETY: the four rotations of x12 add up to 128 bits, so x12 is left as
    // it was, and `orr x10, x10, x10` changes nothing: natively this is a
    // no-op. Under Valgrind the sequence makes the JIT read the six words at
    // x4, which `args` keeps alive and readable for the duration, and write
    // its answer to x3. No stack is used.
    unsafe {
        core::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #61",
            "ror x12, x12, #51",
            "orr x10, x10, x10",
            inout("x3") 0usize => result,
            in("x4") args.as_ptr(),
            options(nostack),
        );
    }
    result
}

/// Where we have no client-request sequence, the request is skipped, exactly
/// as if the program were not running under Valgrind.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn request(_args: &[usize; 6]) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request leaves memory as it was (natively it does nothing).
    #[test]
    fn request_leaves_memory_alone() {
        let bytes = [0x5au8; 64];
        make_mem_defined(bytes.as_ptr() as usize, bytes.len());
        assert_eq!(bytes, [0x5a; 64]);
    }
}
