//! Retention: a recording's directory is deleted once nothing in it has changed for the
//! retention period (`retention_days`; 0 keeps everything). Running recordings are never
//! touched. The node sweeps its storage at start and then every hour.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The newest modification time of anything directly in `dir`.
fn last_change(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).ok()?.modified().ok()?;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    Some(newest)
}

/// Deletes the recording directories in `storage` older than `retention` at `now`,
/// except those of `running` recordings; returns what it deleted.
pub fn sweep(
    storage: &[PathBuf],
    retention: Duration,
    now: SystemTime,
    running: &HashSet<String>,
) -> Vec<PathBuf> {
    let mut deleted = Vec::new();
    for root in storage {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if !path.is_dir() || running.contains(&name) {
                continue;
            }
            let Some(changed) = last_change(&path) else {
                continue;
            };
            if now.duration_since(changed).unwrap_or_default() < retention {
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(recording = %name, dir = %path.display(), "retention period over: recording deleted");
                    deleted.push(path);
                }
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "retention: cannot delete")
                }
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_recordings_go_new_and_running_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let make = |name: &str, age: Duration| {
            let d = root.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            let f = std::fs::File::create(d.join("composite.mp4")).unwrap();
            f.set_modified(now - age).unwrap();
            std::fs::File::open(&d)
                .unwrap()
                .set_modified(now - age)
                .unwrap();
            d
        };
        let old = make("old-rec-0001", 40 * day);
        let fresh = make("new-rec-0001", 2 * day);
        let busy = make("run-rec-0001", 40 * day);
        let running = HashSet::from(["run-rec-0001".to_string()]);
        let deleted = sweep(&[root.path().to_owned()], 30 * day, now, &running);
        assert_eq!(deleted, vec![old.clone()]);
        assert!(!old.exists() && fresh.exists() && busy.exists());
    }
}
