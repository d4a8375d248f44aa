//! Resource limits for guests.
//!
//! Memory: [`MemoryLimiter`] is the store's `ResourceLimiter`. It adds up
//! every linear memory and table of the store and makes a grow past the
//! limit trap (rather than fail quietly, which a Rust guest turns into an
//! abort anyway), remembering that it did so the container can be reported
//! OOM-killed.
//!
//! CPU: the engine's epoch advances every [`TICK`]. Each store's deadline
//! is one tick ahead, so a running guest reaches the callback installed by
//! [`install_epoch_handler`] about once per tick of its own execution.
//! There it always yields to the executor (no guest holds a worker thread
//! for longer than a tick), and, with a CPU limit, it is charged for the
//! tick; a guest over its share of the current period sleeps until the
//! period ends, as the CFS quota does for containers. A store's time
//! between callbacks is counted as at most one tick, because time spent
//! blocked in the host does not run guest code.
//!
//! Usage: the same two meters feed a container's [`Usage`] (what `kubectl
//! top` shows for Wasm): bytes of memory and tables held by its live
//! stores, and guest CPU time as the epoch ticks count it, plus the slice
//! a store ran after its last tick when it ends (a short request often
//! never reaches a tick).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use super::store::Host;

/// How often the engine's epoch advances.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// The CPU accounting period, as in CFS (`cpu.cfs_period_us`).
const PERIOD: Duration = Duration::from_millis(100);

/// What a table element is charged, in bytes (a pointer).
const TABLE_ELEMENT_BYTES: usize = 8;

/// What one Wasm container uses, summed over its stores.
#[derive(Debug, Default)]
pub struct Usage {
    cpu_nanos: AtomicU64,
    memory_bytes: AtomicU64,
}

impl Usage {
    /// Guest CPU time since the container started.
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    /// Bytes of linear memory and tables its live instances hold.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    fn charge_cpu(&self, ran: Duration) {
        let nanos = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Caps the bytes of linear memory and tables of one store, and counts
/// them in the container's [`Usage`] while the store lives.
pub(crate) struct MemoryLimiter {
    limit: Option<usize>,
    used: usize,
    oom: bool,
    usage: Arc<Usage>,
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.usage
            .memory_bytes
            .fetch_sub(self.used as u64, Ordering::Relaxed);
    }
}

impl MemoryLimiter {
    pub(crate) fn new(limit: Option<u64>, usage: Arc<Usage>) -> MemoryLimiter {
        MemoryLimiter {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            used: 0,
            oom: false,
            usage,
        }
    }

    /// Whether a grow was refused because of the limit.
    pub(crate) fn oom(&self) -> bool {
        self.oom
    }

    fn charge(&mut self, what: &str, bytes: usize) -> wasmtime::Result<bool> {
        let wanted = self.used.saturating_add(bytes);
        if let Some(limit) = self.limit
            && wanted > limit
        {
            self.oom = true;
            return Err(wasmtime::format_err!(
                "memory limit of {limit} bytes exceeded: growing a {what} by {bytes} bytes \
                 with {} bytes in use",
                self.used
            ));
        }
        self.usage
            .memory_bytes
            .fetch_add((wanted - self.used) as u64, Ordering::Relaxed);
        self.used = wanted;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the memory's own maximum: an ordinary failed grow.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.charge("memory", desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let elements = desired.saturating_sub(current);
        self.charge("table", elements.saturating_mul(TABLE_ELEMENT_BYTES))
    }
}

/// A CPU limit shared by all stores of one container.
pub(crate) struct CpuQuota {
    /// CPU time allowed per period.
    budget: Duration,
    window: Mutex<Window>,
}

struct Window {
    start: Instant,
    used: Duration,
}

impl CpuQuota {
    pub(crate) fn new(millicores: u64) -> Arc<CpuQuota> {
        // 1000 millicores = one full period per period.
        let micros = (PERIOD.as_micros() as u64).saturating_mul(millicores) / 1000;
        Arc::new(CpuQuota {
            budget: Duration::from_micros(micros).max(Duration::from_millis(1)),
            window: Mutex::new(Window {
                start: Instant::now(),
                used: Duration::ZERO,
            }),
        })
    }

    /// Charges `ran` of CPU; returns how long to pause when the period's
    /// budget is spent.
    fn charge(&self, ran: Duration, now: Instant) -> Option<Duration> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(window.start) >= PERIOD {
            window.start = now;
            window.used = Duration::ZERO;
        }
        window.used += ran;
        if window.used < self.budget {
            return None;
        }
        let end = window.start + PERIOD;
        let pause = end.saturating_duration_since(now);
        // The overdraft is paid in the next period.
        window.used -= self.budget;
        window.start = end;
        if pause.is_zero() { None } else { Some(pause) }
    }
}

/// A store's CPU meter: when its guest last resumed. On drop it charges
/// the slice run since then.
pub(crate) struct CpuMeter {
    resumed: Instant,
    usage: Arc<Usage>,
}

impl CpuMeter {
    pub(crate) fn new(usage: Arc<Usage>) -> CpuMeter {
        CpuMeter {
            resumed: Instant::now(),
            usage,
        }
    }
}

impl Drop for CpuMeter {
    fn drop(&mut self) {
        let ran = Instant::now().saturating_duration_since(self.resumed);
        self.usage.charge_cpu(ran.min(TICK));
    }
}

/// Sets the store's first deadline and what happens at each one: yield,
/// and with a quota, pause while it is spent.
pub(crate) fn install_epoch_handler(store: &mut Store<Host>, quota: Option<Arc<CpuQuota>>) {
    store.data_mut().meter.resumed = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut store| {
        let now = Instant::now();
        let meter = &mut store.data_mut().meter;
        let ran = now.saturating_duration_since(meter.resumed).min(TICK);
        meter.usage.charge_cpu(ran);
        match quota.as_ref().and_then(|q| q.charge(ran, now)) {
            Some(pause) => {
                meter.resumed = now + pause;
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::time::sleep(pause)),
                ))
            }
            None => {
                meter.resumed = now;
                Ok(UpdateDeadline::Yield(1))
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_past_the_limit_traps_and_is_remembered() {
        let mut limiter = MemoryLimiter::new(Some(3 * 65536), Arc::default());
        assert!(limiter.memory_growing(0, 2 * 65536, None).unwrap());
        assert!(!limiter.oom());
        assert!(limiter.memory_growing(2 * 65536, 4 * 65536, None).is_err());
        assert!(limiter.oom());
    }

    #[test]
    fn growing_past_the_memory_maximum_is_a_plain_failure() {
        let mut limiter = MemoryLimiter::new(None, Arc::default());
        assert!(!limiter.memory_growing(0, 10, Some(5)).unwrap());
        assert!(!limiter.oom());
    }

    #[test]
    fn tables_count_against_the_same_limit() {
        let mut limiter = MemoryLimiter::new(Some(1000), Arc::default());
        assert!(limiter.table_growing(0, 100, None).unwrap());
        assert!(limiter.table_growing(100, 1000, None).is_err());
        assert!(limiter.oom());
    }

    #[test]
    fn usage_counts_live_memory_and_cpu() {
        let usage = Arc::new(Usage::default());
        let mut a = MemoryLimiter::new(None, usage.clone());
        let mut b = MemoryLimiter::new(None, usage.clone());
        a.memory_growing(0, 65536, None).unwrap();
        b.memory_growing(0, 2 * 65536, None).unwrap();
        assert_eq!(usage.memory_bytes(), 3 * 65536);
        drop(a);
        assert_eq!(usage.memory_bytes(), 2 * 65536);
        drop(CpuMeter::new(usage.clone()));
        usage.charge_cpu(Duration::from_millis(3));
        assert!(usage.cpu() >= Duration::from_millis(3));
    }

    #[test]
    fn a_spent_quota_pauses_until_the_period_ends() {
        let quota = CpuQuota::new(100); // 10 ms per 100 ms
        let start = quota.window.lock().unwrap().start;
        assert_eq!(quota.charge(Duration::from_millis(5), start), None);
        let pause = quota
            .charge(Duration::from_millis(5), start + Duration::from_millis(20))
            .expect("budget spent");
        assert_eq!(pause, Duration::from_millis(80));
        // The next period starts fresh.
        assert_eq!(quota.charge(Duration::from_millis(5), start + PERIOD), None);
    }
}
