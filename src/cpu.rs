//! CPU-bound work (decompression, layout, compression): at most one busy
//! thread per core across the whole process.
//!
//! A job asks for up to N threads and gets between 1 and N, as many as are
//! free; it runs with exactly that many. Two cold bundles on two cores thus
//! run one thread each instead of two each (cores² threads fighting over
//! cores, which the earlier design allowed), and a lone job still uses every
//! core. Leases block: take them on a blocking thread, never on an async
//! worker, and never while holding one (a nested lease can wait forever).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

pub struct CpuPool {
    cores: usize,
    free: Mutex<usize>,
    freed: Condvar,
    busy: AtomicUsize,
    peak: AtomicUsize,
}

/// Threads held by one job; given back on drop.
pub struct CpuLease {
    pool: Arc<CpuPool>,
    threads: usize,
}

impl CpuPool {
    pub fn new(cores: usize) -> Arc<CpuPool> {
        let cores = cores.max(1);
        Arc::new(CpuPool {
            cores,
            free: Mutex::new(cores),
            freed: Condvar::new(),
            busy: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Wait for at least one free core, then take up to `want` of them.
    pub fn lease(self: &Arc<Self>, want: usize) -> CpuLease {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        let threads = want.clamp(1, *free);
        *free -= threads;
        drop(free);
        let busy = self.busy.fetch_add(threads, Ordering::SeqCst) + threads;
        self.peak.fetch_max(busy, Ordering::SeqCst);
        CpuLease { pool: self.clone(), threads }
    }

    /// The most threads leased at once since start (tests and status).
    pub fn peak_threads(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    pub fn busy_threads(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }
}

impl CpuLease {
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Drop for CpuLease {
    fn drop(&mut self) {
        self.pool.busy.fetch_sub(self.threads, Ordering::SeqCst);
        *self.pool.free.lock().unwrap_or_else(|e| e.into_inner()) += self.threads;
        // One waiter per freed thread (each takes at least one): no herd.
        for _ in 0..self.threads {
            self.pool.freed.notify_one();
        }
    }
}

/// Run CPU-bound `work` on a blocking thread under a lease of at most
/// `want` threads (it gets the number it may use). Everything CPU-bound
/// the daemon does goes through here: extraction, compression, hashing,
/// verification, index parsing.
pub async fn run<T: Send + 'static>(want: usize, work: impl FnOnce(usize) -> T + Send + 'static) -> T {
    let task = tokio::task::spawn_blocking(move || {
        let lease = pool().lease(want);
        let _name = ThreadName::set(c"kpackfs-cpu");
        work(lease.threads())
    });
    match task.await {
        Ok(value) => value,
        // A panic in CPU work is a bug: resume it where it is awaited.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A thread's name (what `top -H` and /proc show) while it does leased
/// work, put back afterwards: the blocking pool's threads serve others too.
struct ThreadName([u8; 16]);

impl ThreadName {
    fn set(name: &std::ffi::CStr) -> ThreadName {
        let mut old = [0u8; 16];
        // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer given;
        // PR_SET_NAME reads a NUL-terminated string (truncated to 15 bytes).
        unsafe {
            libc::prctl(libc::PR_GET_NAME, old.as_mut_ptr());
            libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        }
        ThreadName(old)
    }
}

impl Drop for ThreadName {
    fn drop(&mut self) {
        // SAFETY: the buffer holds the NUL-terminated name PR_GET_NAME gave.
        unsafe { libc::prctl(libc::PR_SET_NAME, self.0.as_ptr()) };
    }
}

/// The process's pool, one thread per core.
pub fn pool() -> &'static Arc<CpuPool> {
    static POOL: OnceLock<Arc<CpuPool>> = OnceLock::new();
    POOL.get_or_init(|| CpuPool::new(cores()))
}

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_never_exceed_the_cores() {
        let pool = CpuPool::new(2);
        let a = pool.lease(2);
        assert_eq!(a.threads(), 2);
        let p2 = pool.clone();
        let waiter = std::thread::spawn(move || p2.lease(2).threads());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(pool.busy_threads(), 2, "the second job waits");
        drop(a);
        assert_eq!(waiter.join().unwrap(), 2);
        let b = pool.lease(1);
        let c = pool.lease(5);
        assert_eq!((b.threads(), c.threads()), (1, 1));
        assert_eq!(pool.peak_threads(), 2);
    }
}
