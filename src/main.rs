//! The `tickcore` binary: parses flags and runs the engine until SIGINT/SIGTERM.
use clap::Parser;

fn main() {
    let config = tickcore::config::Config::parse();
    if let Err(e) = tickcore::server::run(config) {
        eprintln!("tickcore: error: {e}");
        std::process::exit(1);
    }
}
