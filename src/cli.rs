//! The `parapet` command line: CLI → config → server → run.
//!
//! ```text
//! parapet -c FILE          run (Pingora's flags: -t test config, -u upgrade, -d daemon)
//! parapet run -c FILE      supervisor: one PID across zero-downtime reloads (SIGHUP)
//! parapet demo             an edge in front of three example origins
//! ```

use crate::runtime::Snapshot;
use crate::{app, demo, metrics, supervisor};
use pingora::server::configuration::Opt;
use std::path::PathBuf;

const USAGE: &str = "usage:
  parapet -c FILE [-t] [-u] [-d]   run the edge (-t: check the config and exit,
                                   -u: take over from a running generation, -d: daemonize)
  parapet run -c FILE              supervise: SIGHUP reloads with zero downtime
  parapet demo [--edge ADDR] [--admin ADDR] [--origins A,B,C]
                                   edge + three example origins on 127.0.0.1";

fn init_logging() {
    crate::logging::init();
}

/// Runs the command line in `std::env::args()`; the process exit code
/// (where the server runs, it does not return).
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("run") => {
            init_logging();
            let Some(path) = conf_arg(&args[2..]) else {
                eprintln!("{USAGE}");
                return 2;
            };
            return supervisor::run(path);
        }
        Some("demo") => {
            init_logging();
            metrics::init();
            return demo::run(&args[2..]);
        }
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            return 0;
        }
        _ => {}
    }

    let opt = Opt::parse_args();
    let Some(path) = opt.conf.clone().map(PathBuf::from) else {
        eprintln!("parapet: no config file given (-c FILE)\n{USAGE}");
        return 2;
    };
    // Our own validation runs before Pingora sees `-t`: Pingora's check exits 0
    // inside bootstrap() even for a bad file.
    let snap = match Snapshot::load(&path) {
        Ok(s) => s,
        Err(errs) => {
            supervisor::print_errors(&path, &errs);
            return 1;
        }
    };
    if opt.test {
        for w in snap.warnings() {
            eprintln!("parapet: {}: warning: {w}", path.display());
        }
        println!("parapet: configuration file {} is OK", path.display());
        return 0;
    }
    init_logging();
    for w in snap.warnings() {
        log::warn!("{}: {w}", path.display());
    }
    metrics::init();
    // Pingora would try to read `conf` as its own YAML; we hand it our ServerConf.
    let opt = Opt { conf: None, ..opt };
    app::run(app::build(opt, snap))
}

/// The value of `-c FILE` / `--conf FILE` / `-cFILE` / `--conf=FILE`.
fn conf_arg(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--conf" => return it.next().map(PathBuf::from),
            s if s.starts_with("--conf=") => return Some(PathBuf::from(&s[7..])),
            s if s.starts_with("-c") && s.len() > 2 => return Some(PathBuf::from(&s[2..])),
            _ => {}
        }
    }
    None
}
