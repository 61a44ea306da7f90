//! The `cairn` program, built as part of this package so that cargo builds it for the
//! integration tests (which find it as `CARGO_BIN_EXE_cairn-under-test`).

fn main() {
    std::process::exit(cairn_server::cli::main());
}
