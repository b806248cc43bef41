//! The `distill` binary: parses the command line and hands it to `distill::cli`.

fn main() {
    purge_at_once();
    no_huge_pages();
    more_descriptors();
    distill::tls::init();
    std::process::exit(distill::cli::main());
}

// The run allocates and frees many short strings and maps per node; mimalloc halves the
// allocator's share of a warm run's time compared with glibc's malloc (bench/engine.py (c)).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc keeps freed pages committed for `purge_delay` ms (10, times 10 for arenas)
/// before returning them to the kernel; under a run's steady churn of freed buffers those
/// delays overlap and resident memory creeps up with the run's length although the live heap
/// stays flat (heaptrack: 10.5 MB peak heap at 20,000 problems). Purging at once measured,
/// bench (e) peak RSS at 1,000 / 20,000 problems: 34.5 / 39.5 MB -> 29.3 / 32.8 MB, CPU the
/// same within noise. Set first, before the allocator has freed anything.
fn purge_at_once() {
    // `mi_option_purge_delay` in mimalloc's v2 and v3 headers (the sys crate names no constant).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set writes one integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// mimalloc asks the kernel for transparent huge pages on its arenas; where the kernel
/// compacts memory to serve them (`defrag=madvise`, the common default) a fault can cost a
/// compaction, and each 2 MB page is resident whole. Measured on bench (b)/(c): peak RSS 61
/// -> 44 MB, CPU unchanged. Set before the arenas are touched much; a refusal is harmless.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes a process flag.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// The cache keeps a descriptor open per pack segment it reads, and a run holds its HTTP
/// connections: the soft limit on open files (often 1,024) is raised to the hard one.
fn more_descriptors() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit read and write the plain struct passed to them.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
