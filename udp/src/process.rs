//! The process calls outside networking that fastpay needs: a thread's scheduling priority
//! and the CPU time of the process, of the calling thread and of named threads.

use std::io;
use std::time::Duration;

/// The nice value of the lowest scheduling priority on Linux.
const LOWEST_PRIORITY: libc::c_int = 19;

/// Gives the calling thread the lowest scheduling priority (nice 19), so that it runs only
/// when nothing else on its core wants to. On failure the thread keeps its priority.
pub fn lower_thread_priority() -> io::Result<()> {
    // SAFETY: on Linux, setpriority with who = 0 changes only the calling thread; it touches
    // no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, LOWEST_PRIORITY) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the scheduler for time slices of `slice` for the calling thread, keeping its nice
/// value under the ordinary policy (`sched_setattr` with `sched_runtime`, which Linux 6.12 and
/// later read as the slice of a fair thread, clamped to 0.1–100 ms). A thread with a short
/// slice preempts one with a longer slice when it wakes, rather than waiting on its core for
/// the running thread's slice to end; older kernels accept the call and ignore the slice. On
/// failure the thread keeps its slice.
pub fn shorten_time_slice(slice: Duration) -> io::Result<()> {
    // getpriority may return -1 as a nice value: errno tells an error apart.
    // SAFETY: errno is thread-local; writing it touches no memory of ours.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: getpriority with who = 0 reads the calling thread's nice value only.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS as _, 0) };
    let error = io::Error::last_os_error();
    if nice == -1 && error.raw_os_error() != Some(0) {
        return Err(error);
    }
    // SAFETY: an all-zero `sched_attr` is a valid value (SCHED_OTHER, nice 0, no flags).
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    attr.sched_nice = nice;
    attr.size = std::mem::size_of::<libc::sched_attr>() as u32;
    attr.sched_policy = libc::SCHED_OTHER as u32;
    attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: sched_setattr with pid 0 changes only the calling thread and reads `size`
    // bytes of the live `attr`.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const _, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CPU time (user and system) this process has used so far.
pub fn process_cpu_time() -> io::Result<Duration> {
    // SAFETY: an all-zero `rusage` is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a pointer to a live `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(timeval(usage.ru_utime) + timeval(usage.ru_stime))
}

/// CPU time (user and system) the calling thread has used so far.
pub fn thread_cpu_time() -> io::Result<Duration> {
    // SAFETY: an all-zero `rusage` is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a pointer to a live `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(timeval(usage.ru_utime) + timeval(usage.ru_stime))
}

/// CPU time used so far by this process's live threads whose name starts with `prefix`
/// (`shard-`, say): the scheduler's own account of each in `/proc/self/task/<tid>/schedstat`,
/// in nanoseconds.
pub fn named_threads_cpu_time(prefix: &str) -> io::Result<Duration> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        // A thread that ended meanwhile is skipped.
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if !name.starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        let ran = stat.split_whitespace().next().and_then(|n| n.parse().ok());
        nanos = nanos.saturating_add(ran.unwrap_or(0));
    }
    Ok(Duration::from_nanos(nanos))
}

fn timeval(t: libc::timeval) -> Duration {
    let micros = u32::try_from(t.tv_usec).unwrap_or(0).min(999_999);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), micros * 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's slice as the scheduler reports it (`se.slice` in
    /// `/proc/thread-self/sched`, where the kernel shows it), in nanoseconds.
    fn reported_slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[test]
    fn a_thread_gets_the_slice_it_asks_for_keeping_its_nice_value() {
        let before = reported_slice();
        std::thread::spawn(|| {
            lower_thread_priority().unwrap();
            shorten_time_slice(Duration::from_micros(250)).unwrap();
            // SAFETY: getpriority with who = 0 reads the calling thread's nice value only.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS as _, 0) };
            assert_eq!(nice, LOWEST_PRIORITY, "the nice value is kept");
            // Kernels before 6.12 accept the call without a slice to show.
            if let Some(slice) = reported_slice() {
                assert_eq!(slice, 250_000);
            }
        })
        .join()
        .unwrap();
        assert_eq!(reported_slice(), before);
    }

    #[test]
    fn named_threads_count_their_own_cpu_time_only() {
        let (spent, spent_rx) = std::sync::mpsc::channel();
        let busy = std::thread::Builder::new()
            .name("cputest-busy".into())
            .spawn(move || {
                let started = thread_cpu_time().unwrap();
                while thread_cpu_time().unwrap() - started < Duration::from_millis(300) {
                    std::hint::black_box(0u64);
                }
                spent.send(()).unwrap();
                // Stay alive (and counted) until told to end.
                std::thread::park();
            })
            .unwrap();
        spent_rx.recv().unwrap();
        let counted = named_threads_cpu_time("cputest-").unwrap();
        assert!(counted >= Duration::from_millis(250), "{counted:?}");
        assert_eq!(
            named_threads_cpu_time("no-such-thread-").unwrap(),
            Duration::ZERO
        );
        busy.thread().unpark();
        busy.join().unwrap();
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = process_cpu_time().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut x = 1u64;
        while process_cpu_time().unwrap() <= before && std::time::Instant::now() < deadline {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        assert!(process_cpu_time().unwrap() > before);
    }

    #[test]
    fn a_thread_can_lower_its_priority() {
        // Lowering is always allowed (raising it back is not), so do it on a thread of its own.
        std::thread::spawn(|| lower_thread_priority().unwrap())
            .join()
            .unwrap();
    }
}
