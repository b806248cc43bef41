//! The `distill` binary: parses the command line and hands it to `distill::cli`.

fn main() {
    std::process::exit(distill::cli::main());
}
