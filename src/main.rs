//! The `tickcore` binary: parses flags and runs the engine until SIGINT/SIGTERM, or with `--verify` checks a
//! stopped engine's data directory offline.
use clap::Parser;

fn main() {
    let config = tickcore::config::Config::parse();
    if config.verify {
        std::process::exit(verify(&config));
    }
    if let Err(e) = tickcore::server::run(config) {
        eprintln!("tickcore: error: {e}");
        std::process::exit(1);
    }
}

/// `--verify`: the offline check of a stopped engine's data directory.
fn verify(config: &tickcore::config::Config) -> i32 {
    let _lock = match tickcore::store::layout::DirLock::acquire(&config.data_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tickcore: error: {e}");
            return 1;
        }
    };
    let layout = tickcore::store::layout::Layout::new(&config.data_dir);
    match tickcore::store::verify::verify(&layout) {
        Ok(s) => {
            for n in &s.notes {
                println!("log {n}");
            }
            for f in &s.findings {
                println!(
                    "PROBLEM {} at offset {}: {}",
                    f.path.display(),
                    f.offset,
                    f.what
                );
            }
            println!(
                "verified {} tag files ({} records) and {} logs ({} commits): {} problems",
                s.tag_files,
                s.records,
                s.logs,
                s.commits,
                s.findings.len()
            );
            i32::from(!s.findings.is_empty())
        }
        Err(e) => {
            eprintln!(
                "tickcore: error: verifying {}: {e}",
                config.data_dir.display()
            );
            1
        }
    }
}
