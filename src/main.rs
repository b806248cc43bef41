//! The `distill` binary: parses the command line and hands it to `distill::cli`.

fn main() {
    distill::tls::init();
    std::process::exit(distill::cli::main());
}

// The run allocates and frees many short strings and maps per node; mimalloc halves the
// allocator's share of a warm run's time compared with glibc's malloc (bench/engine.py (c)).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
