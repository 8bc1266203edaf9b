//! The admin API (token required on every endpoint, compared in constant
//! time):
//!
//! | request             | answer                                                  |
//! |---------------------|---------------------------------------------------------|
//! | `GET /api/status`   | everything below plus traffic and reloads (JSON)        |
//! | `GET /api/pools`    | pools, backend health, requests, errors, latency (JSON) |
//! | `GET /api/cache`    | lookups by result, hit ratio, storage per tier (JSON)   |
//! | `GET /api/config`   | the running config file, secrets redacted (YAML)        |
//! | `POST /api/reload`  | validate the file, then reload as SIGHUP would          |
//! | `POST /api/purge`   | same as `POST /purge`                                   |

use super::overview;
use crate::runtime::Snapshot;
use http::StatusCode;
use std::path::Path;

pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

fn json(value: &impl serde::Serialize) -> Answer {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            Answer {
                status: StatusCode::OK,
                content_type: "application/json",
                body,
            }
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn text(status: StatusCode, body: String) -> Answer {
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into_bytes(),
    }
}

/// GET endpoints; `None` for paths that are not the API's.
pub fn get(snap: &Snapshot, path: &str) -> Option<Answer> {
    Some(match path {
        "/api/status" => json(&overview::gather(snap)),
        "/api/pools" => json(&overview::gather(snap).pools),
        "/api/cache" => match overview::gather(snap).cache {
            Some(c) => json(&c),
            None => text(StatusCode::NOT_FOUND, "no route caches\n".into()),
        },
        "/api/config" => match snap.source.as_deref().map(config_text_redacted) {
            Some(Ok(yaml)) => Answer {
                status: StatusCode::OK,
                content_type: "application/yaml",
                body: yaml.into_bytes(),
            },
            Some(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            None => text(StatusCode::NOT_FOUND, "no config file\n".into()),
        },
        _ => return None,
    })
}

/// `POST /api/reload`: the file is checked here first, so a bad file is
/// answered with its errors (422) and nothing else happens; a good one is
/// handed to the supervisor as a SIGHUP (which checks it again).
pub fn reload(snap: &Snapshot) -> Answer {
    let Some(path) = snap.source.as_deref() else {
        return text(StatusCode::CONFLICT, "no config file to reload\n".into());
    };
    if let Err(errs) = Snapshot::load(path) {
        let mut body = format!("reload refused, {} error(s):\n", errs.len());
        for e in errs.iter() {
            body.push_str(&format!("{e}\n"));
        }
        return text(StatusCode::UNPROCESSABLE_ENTITY, body);
    }
    // Only a supervisor that started us (our parent) may be signalled.
    let supervisor = std::env::var(crate::supervisor::ENV_SUPERVISOR)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        // SAFETY: getppid has no preconditions.
        .filter(|pid| *pid == unsafe { libc::getppid() });
    match supervisor {
        // SAFETY: plain syscall on our parent's pid.
        Some(pid) if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 => {
            log::info!("admin API: reload requested; signalled supervisor {pid}");
            Answer {
                status: StatusCode::ACCEPTED,
                content_type: "application/json",
                body: b"{\"reload\": \"started\"}\n".to_vec(),
            }
        }
        _ => text(
            StatusCode::CONFLICT,
            "not running under `parapet run`: reload with the handoff by hand (-u)\n".into(),
        ),
    }
}

/// Keys whose values the admin API never shows.
const SECRET_KEYS: [&str; 4] = ["token", "password", "secret", "passphrase"];

/// The config file as YAML with secret values replaced by `<redacted>`.
fn config_text_redacted(path: &Path) -> Result<String, String> {
    fn redact(v: &mut serde_yaml::Value) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m.iter_mut() {
                    let secret = k
                        .as_str()
                        .is_some_and(|k| SECRET_KEYS.iter().any(|s| k.eq_ignore_ascii_case(s)));
                    if secret && !v.is_mapping() && !v.is_sequence() {
                        *v = serde_yaml::Value::String("<redacted>".into());
                    } else {
                        redact(v);
                    }
                }
            }
            serde_yaml::Value::Sequence(s) => s.iter_mut().for_each(redact),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    redact(&mut doc);
    serde_yaml::to_string(&doc).map_err(|e| e.to_string())
}
