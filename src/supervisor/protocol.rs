//! What `parapet run` and the generations it starts share, in one place:
//! the environment a generation is started with, the history file beside the
//! handoff socket, and the reload request a generation sends its supervisor.
//!
//! * `PARAPET_SUPERVISOR`: the supervisor's pid. A generation signals it
//!   (SIGHUP) for a reload requested through the admin API, and only when it
//!   is really its parent.
//! * `PARAPET_RELOADS`: the recent history (one event a line, newest last)
//!   as it was when the generation started.
//! * `<upgrade_sock>.history`: the same history, kept current by the
//!   supervisor, so the serving generation's status page also shows reloads
//!   refused or failed after it started.

use std::path::{Path, PathBuf};
use std::process::Command;

const ENV_SUPERVISOR: &str = "PARAPET_SUPERVISOR";
const ENV_HISTORY: &str = "PARAPET_RELOADS";

/// Sets the environment of a generation the supervisor starts.
pub(super) fn start_generation_env(cmd: &mut Command, history: &[String]) {
    cmd.env(ENV_SUPERVISOR, std::process::id().to_string());
    cmd.env(ENV_HISTORY, history.join("\n"));
}

/// Where the supervisor keeps its recent history: beside the handoff socket,
/// a path the supervisor and every generation know.
fn history_file(upgrade_sock: &Path) -> PathBuf {
    let mut name = upgrade_sock.as_os_str().to_owned();
    name.push(".history");
    PathBuf::from(name)
}

/// Replaces the history file (atomically: written aside, then renamed).
pub(super) fn write_history(upgrade_sock: &Path, history: &[String]) {
    let path = history_file(upgrade_sock);
    let tmp = path.with_extension("tmp");
    let written =
        std::fs::write(&tmp, history.join("\n")).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        log::debug!("cannot write {}: {e}", path.display());
    }
}

/// The recent starts and reloads as this generation knows them: the
/// supervisor's file when supervised (current), else what the environment
/// held at start; empty without a supervisor.
pub(crate) fn history(upgrade_sock: &Path) -> Vec<String> {
    std::env::var_os(ENV_SUPERVISOR)
        .and_then(|_| std::fs::read_to_string(history_file(upgrade_sock)).ok())
        .or_else(|| std::env::var(ENV_HISTORY).ok())
        .map(|h| {
            h.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Asks the supervisor that started this generation for a reload (SIGHUP);
/// its pid, or `None` when not running under `parapet run` (the variable is
/// missing, or names a process that is not our parent).
pub(crate) fn request_reload() -> Option<i32> {
    let pid = std::env::var(ENV_SUPERVISOR)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        // SAFETY: getppid has no preconditions.
        .filter(|pid| *pid == unsafe { libc::getppid() })?;
    // SAFETY: plain syscall on our parent's pid.
    (unsafe { libc::kill(pid, libc::SIGHUP) } == 0).then_some(pid)
}
