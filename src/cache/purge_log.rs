//! The purges this cache applied, with their times: what a fleet node that
//! was down during a purge catches up on when it comes back, before its disk
//! tier serves anything (see [`crate::fleet`]). Kept in memory and, with a
//! disk tier, appended to `purges.log` beside the objects, so a restarted
//! node knows how far it got.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Entries kept (the oldest go first).
const KEEP: usize = 10_000;

/// One applied purge: when (ms since the epoch) and its admin query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) at_ms: u64,
    pub(crate) query: String,
}

pub(crate) struct PurgeLog {
    file: Option<PathBuf>,
    entries: Mutex<Vec<Entry>>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PurgeLog {
    /// The log, read back from `dir/purges.log` when there is a disk tier.
    pub(crate) fn open(dir: Option<PathBuf>) -> PurgeLog {
        let file = dir.map(|d| d.join("purges.log"));
        let mut entries: Vec<Entry> = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|text| text.lines().filter_map(parse).collect())
            .unwrap_or_default();
        let drop = entries.len().saturating_sub(KEEP);
        entries.drain(..drop);
        PurgeLog {
            file,
            entries: Mutex::new(entries),
        }
    }

    /// Records a purge applied now.
    pub(crate) fn record(&self, query: &str) {
        let entry = Entry {
            at_ms: now_ms(),
            query: query.replace(['\n', '\r'], ""),
        };
        if let Some(f) = &self.file {
            let line = format!("{} {}\n", entry.at_ms, entry.query);
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .and_then(|mut file| file.write_all(line.as_bytes()));
            if let Err(e) = written {
                log::warn!("cannot append to {}: {e}", f.display());
            }
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.push(entry);
            if entries.len() > KEEP {
                entries.remove(0);
            }
        }
    }

    /// The time of the newest entry (0 when empty).
    pub(crate) fn latest_ms(&self) -> u64 {
        self.entries
            .lock()
            .ok()
            .and_then(|e| e.last().map(|e| e.at_ms))
            .unwrap_or(0)
    }

    /// Entries at or after `since_ms`, as text lines `MS QUERY`.
    pub(crate) fn since(&self, since_ms: u64) -> String {
        let mut out = String::new();
        if let Ok(entries) = self.entries.lock() {
            for e in entries.iter().filter(|e| e.at_ms >= since_ms) {
                out.push_str(&format!("{} {}\n", e.at_ms, e.query));
            }
        }
        out
    }
}

/// A `MS QUERY` line.
pub(crate) fn parse(line: &str) -> Option<Entry> {
    let (ms, query) = line.split_once(' ')?;
    Some(Entry {
        at_ms: ms.parse().ok()?,
        query: query.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_survives_a_restart_and_answers_since() {
        let dir = std::env::temp_dir().join(format!("parapet-purge-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = PurgeLog::open(Some(dir.clone()));
        log.record("url=http://a/1");
        let t = log.latest_ms();
        assert!(t > 0);
        log.record("tag=x&soft=1");
        let again = PurgeLog::open(Some(dir.clone()));
        assert_eq!(again.latest_ms(), log.latest_ms());
        let lines = again.since(t);
        assert!(
            lines.contains("url=http://a/1") && lines.contains("tag=x&soft=1"),
            "{lines}"
        );
        assert!(again.since(u64::MAX).is_empty());
        assert_eq!(parse("12 url=x").unwrap().query, "url=x");
        assert!(parse("garbage").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
