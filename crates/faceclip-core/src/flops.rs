//! A count of the useful multiply-adds a forward pass does, for the benches' GFLOP/s and
//! `peak_frac` (issue #19): the reference algorithm's products — linear layers, convolutions
//! (direct, not Winograd), attention's two matmuls, other GEMMs — not what a fast kernel
//! actually executes. Off unless [`start`] was called: one relaxed load per layer call then.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
static MACS: AtomicU64 = AtomicU64::new(0);

/// Starts counting from zero (process-wide).
pub fn start() {
    MACS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
}

/// Stops counting; the multiply-adds counted since [`start`].
pub fn stop() -> u64 {
    COUNTING.store(false, Ordering::Relaxed);
    MACS.load(Ordering::Relaxed)
}

/// Records `macs` multiply-adds when counting.
#[inline]
pub fn add(macs: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        MACS.fetch_add(macs as u64, Ordering::Relaxed);
    }
}

/// Records a `[.., m, k] x [.., k, n]` product over `batch` matrices.
#[inline]
pub fn add_matmul(batch: usize, m: usize, k: usize, n: usize) {
    add(batch * m * k * n);
}
