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

pub(super) struct Answer {
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
pub(super) fn get(snap: &Snapshot, path: &str) -> Option<Answer> {
    Some(match path {
        "/api/status" => json(&overview::gather(snap)),
        "/api/pools" => json(&overview::gather(snap).pools),
        "/api/cache" => match overview::gather(snap).cache {
            Some(c) => json(&c),
            None => text(StatusCode::NOT_FOUND, "no route caches\n".into()),
        },
        "/api/fleet" => match &snap.edge.fleet {
            Some(f) => fleet_json(f),
            None => text(StatusCode::NOT_FOUND, "no fleet configured\n".into()),
        },
        "/api/config" => match snap.admin.source_text.as_deref().map(config_text_redacted) {
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

/// `GET /api/fleet`: this node, the ring's size, every member.
fn fleet_json(fleet: &crate::fleet::Fleet) -> Answer {
    let view = fleet.view();
    let members: Vec<serde_json::Value> = view
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.name,
                "address": m.addr.to_string(),
                "up": m.up,
                "self": m.is_self,
                "since": crate::access_log::rfc3339(m.since),
                "last_error": m.last_error,
            })
        })
        .collect();
    let body = serde_json::json!({
        "node": fleet.node,
        "ring_size": view.ring_size,
        "members": members,
    });
    Answer {
        status: StatusCode::OK,
        content_type: "application/json",
        body: format!("{body}\n").into_bytes(),
    }
}

/// `POST /api/reload`: the file is checked here first, so a bad file is
/// answered with its errors (422) and nothing else happens; a good one is
/// handed to the supervisor as a SIGHUP (which checks it again).
pub(super) fn reload(snap: &Snapshot) -> Answer {
    let Some(path) = snap.admin.source.as_deref() else {
        return text(StatusCode::CONFLICT, "no config file to reload\n".into());
    };
    if let Err(errs) = Snapshot::load(path) {
        let mut body = format!("reload refused, {} error(s):\n", errs.len());
        for e in errs.iter() {
            body.push_str(&format!("{e}\n"));
        }
        return text(StatusCode::UNPROCESSABLE_ENTITY, body);
    }
    match crate::supervisor::protocol::request_reload() {
        Some(pid) => {
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
/// The config text with secrets replaced by `<redacted>`: values of keys
/// named like secrets, and every header value a route sets (they often carry
/// origin credentials: `Authorization`, API keys, cookies).
fn config_text_redacted(text: &str) -> Result<String, String> {
    fn redact(v: &mut serde_yaml::Value, all: bool) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m.iter_mut() {
                    let key = k.as_str().unwrap_or("");
                    let secret = all || SECRET_KEYS.iter().any(|s| key.eq_ignore_ascii_case(s));
                    if secret && !v.is_mapping() && !v.is_sequence() {
                        *v = serde_yaml::Value::String("<redacted>".into());
                    } else {
                        // `request_headers: {set: {...}}` and `response_headers`.
                        let headers = key.ends_with("_headers");
                        redact(v, all);
                        if headers {
                            if let Some(set) = v.get_mut("set") {
                                redact(set, true);
                            }
                        }
                    }
                }
            }
            serde_yaml::Value::Sequence(s) => s.iter_mut().for_each(|x| redact(x, all)),
            _ => {}
        }
    }
    let mut doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    redact(&mut doc, false);
    serde_yaml::to_string(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::config_text_redacted;

    #[test]
    fn secrets_and_route_header_values_are_redacted() {
        let out = config_text_redacted(
            "admin: {address: 127.0.0.1:1, token: hunter2-hunter2}\n\
             routes:\n  - upstream: o\n    request_headers:\n      set: {Authorization: Bearer origin-secret}\n      remove: [Cookie]\n",
        )
        .unwrap();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("origin-secret"), "{out}");
        assert!(out.contains("Authorization: <redacted>"), "{out}");
        assert!(out.contains("- Cookie"), "names stay visible: {out}");
        assert!(out.contains("upstream: o"), "{out}");
    }
}
