//! `parapet run -c FILE`: a supervisor that keeps one PID (PID 1 in a
//! container) across zero-downtime reloads.
//!
//! * SIGHUP: validate the config file; if it has errors, log every one and keep
//!   serving with the running generation. Otherwise start `parapet -u -c FILE`,
//!   wait until it listens on `upgrade_sock`, then SIGQUIT the running
//!   generation, which hands over its sockets and drains. If the new generation
//!   dies or does not get ready in time, it is killed and the old one keeps
//!   serving, untouched.
//! * SIGTERM / SIGINT / SIGQUIT: forwarded to every generation; the supervisor
//!   exits when they have all exited.
//! * A generation that dies on its own ends the supervisor with its exit code,
//!   so the container or init system sees the failure.
//!
//! Children are reaped with `waitpid(-1)`, which also reaps orphans when the
//! supervisor is PID 1.

pub(crate) mod protocol;

use crate::config::ConfigErrors;
use crate::runtime::Snapshot;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// How long a new generation may take to start listening for the handoff.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Events kept in the reload history.
const HISTORY: usize = 10;

struct Supervisor {
    exe: PathBuf,
    config: PathBuf,
    /// The generation that owns the listeners.
    current: i32,
    /// Older generations still draining.
    retiring: Vec<i32>,
    stopping: bool,
    /// Set when the serving generation died on its own: the supervisor's exit code.
    failure: Option<i32>,
    /// The handoff socket; a reload cannot move it (the running generation
    /// sends its sockets to the path it was started with).
    upgrade_sock: PathBuf,
    /// Recent starts and reloads, newest last, handed to each new generation
    /// (its status page shows them).
    history: Vec<String>,
}

/// Runs the supervisor; returns the process exit code.
pub(crate) fn run(config: PathBuf) -> i32 {
    let snap = match Snapshot::load(&config) {
        Ok(s) => s,
        Err(errs) => {
            print_errors(&config, &errs);
            return 1;
        }
    };
    let upgrade_sock = PathBuf::from(&snap.process.upgrade_sock());
    drop(snap);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            log::error!("cannot find my own executable: {e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the supervisor runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let mut sup = Supervisor {
            exe,
            config,
            current: 0,
            retiring: Vec::new(),
            stopping: false,
            failure: None,
            upgrade_sock,
            history: Vec::new(),
        };
        sup.main_loop().await
    })
}

pub(crate) fn print_errors(config: &Path, errs: &ConfigErrors) {
    for e in errs.iter() {
        eprintln!("parapet: {}: {e}", config.display());
    }
    eprintln!(
        "parapet: {}: {} error{} found",
        config.display(),
        errs.len(),
        if errs.len() == 1 { "" } else { "s" }
    );
}

impl Supervisor {
    fn note(&mut self, event: String) {
        let line = format!(
            "{} {event}",
            crate::access_log::rfc3339(std::time::SystemTime::now())
        );
        self.history.push(line);
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
        // The serving generation reads this file for its status page, so a
        // refused or failed reload shows there too (the environment only
        // carries what happened before a generation started).
        protocol::write_history(&self.upgrade_sock, &self.history);
    }

    fn spawn(&self, upgrade: bool) -> io::Result<i32> {
        let mut cmd = Command::new(&self.exe);
        if upgrade {
            cmd.arg("-u");
        }
        cmd.arg("-c").arg(&self.config);
        protocol::start_generation_env(&mut cmd, &self.history);
        let child = cmd.spawn()?;
        Ok(child.id() as i32)
    }

    async fn main_loop(&mut self) -> i32 {
        let signals = (|| -> io::Result<_> {
            Ok((
                signal(SignalKind::hangup())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::quit())?,
                signal(SignalKind::child())?,
            ))
        })();
        let (mut hup, mut term, mut int, mut quit, mut child) = match signals {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot install signal handlers: {e}");
                return 1;
            }
        };
        self.note("supervisor started".into());
        match self.spawn(false) {
            Ok(pid) => {
                log::info!(
                    "supervisor {}: started generation pid {pid}",
                    std::process::id()
                );
                self.current = pid;
            }
            Err(e) => {
                log::error!("cannot start parapet: {e}");
                return 1;
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    if !self.stopping {
                        self.reload().await;
                    }
                }
                _ = term.recv() => self.stop(libc::SIGTERM),
                _ = int.recv() => self.stop(libc::SIGINT),
                _ = quit.recv() => self.stop(libc::SIGQUIT),
                _ = child.recv() => {}
                _ = tick.tick() => {}
            }
            if let Some(code) = self.reap() {
                return code;
            }
        }
    }

    fn stop(&mut self, sig: i32) {
        self.stopping = true;
        log::info!("supervisor: stopping, forwarding signal {sig} to every generation");
        for pid in std::iter::once(self.current).chain(self.retiring.iter().copied()) {
            if pid > 0 {
                send(pid, sig);
            }
        }
    }

    /// Reaps exited children. Returns the exit code once the supervisor is
    /// stopping and every generation has exited.
    fn reap(&mut self) -> Option<i32> {
        loop {
            let mut status = 0;
            // SAFETY: plain syscall with a valid pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let code = exit_code(status);
            if pid == self.current {
                self.current = 0;
                if !self.stopping {
                    log::error!("generation pid {pid} exited on its own (code {code}); stopping");
                    self.failure = Some(if code == 0 { 1 } else { code });
                    self.stop(libc::SIGTERM);
                }
            } else if let Some(i) = self.retiring.iter().position(|p| *p == pid) {
                self.retiring.remove(i);
                log::info!("old generation pid {pid} finished draining (code {code})");
            }
        }
        (self.stopping && self.current == 0 && self.retiring.is_empty())
            .then(|| self.failure.unwrap_or(0))
    }

    /// Validates the config, starts the next generation and hands over.
    async fn reload(&mut self) {
        let snap = match Snapshot::load(&self.config) {
            Ok(s) => s,
            Err(errs) => {
                for e in errs.iter() {
                    log::error!("reload refused: {}: {e}", self.config.display());
                }
                log::error!(
                    "reload refused: {} error(s); still serving with generation pid {}",
                    errs.len(),
                    self.current
                );
                self.note(format!("reload refused: {} config error(s)", errs.len()));
                return;
            }
        };
        let sock = PathBuf::from(&snap.process.upgrade_sock());
        drop(snap);
        if sock != self.upgrade_sock {
            log::error!(
                "reload refused: server.upgrade_sock changed from {} to {}; the handoff needs the same path (restart instead)",
                self.upgrade_sock.display(),
                sock.display()
            );
            return;
        }
        let before = socket_identity(&sock);
        self.note(format!(
            "reload: config valid, new generation takes over from pid {}",
            self.current
        ));
        let new = match self.spawn(true) {
            Ok(pid) => pid,
            Err(e) => {
                log::error!("reload failed: cannot start a new generation: {e}");
                return;
            }
        };
        log::info!(
            "reload: new generation pid {new} waiting for the handoff on {}",
            sock.display()
        );
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let now = socket_identity(&sock);
            if now.is_some() && now != before {
                break;
            }
            let mut status = 0;
            // SAFETY: plain syscall with a valid pointer.
            if unsafe { libc::waitpid(new, &mut status, libc::WNOHANG) } == new {
                log::error!(
                    "reload failed: new generation pid {new} exited (code {}); still serving with pid {}",
                    exit_code(status),
                    self.current
                );
                self.note(format!(
                    "reload failed: new generation exited (code {})",
                    exit_code(status)
                ));
                return;
            }
            if Instant::now() > deadline {
                log::error!("reload failed: new generation pid {new} not ready in {READY_DEADLINE:?}; killing it");
                send(new, libc::SIGKILL);
                self.note("reload failed: new generation not ready in time".into());
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let old = std::mem::replace(&mut self.current, new);
        if old > 0 {
            send(old, libc::SIGQUIT);
            self.retiring.push(old);
        }
        log::info!("reload: generation pid {new} took over from pid {old}");
    }
}

/// (device, inode) of the upgrade socket file, if it exists: a new
/// generation unlinks and re-creates it when it starts listening.
fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn send(pid: i32, sig: i32) {
    // SAFETY: plain syscall; pid is one of our children.
    if unsafe { libc::kill(pid, sig) } != 0 {
        log::warn!("cannot signal pid {pid}: {}", io::Error::last_os_error());
    }
}

fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
