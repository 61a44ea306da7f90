//! The Cairn node process: RPC transport, pgwire, HTTP and the `cairn` command line.
