//! The `cairn` binary.

fn main() {
    std::process::exit(cairn_server::cli::main());
}
