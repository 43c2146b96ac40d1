//! Download links of recordings: signed (`common::download`) with the controller's key,
//! expiring, pointing at the recording node that holds the files, which checks them.
use crate::model::{Recording, RecordingState};
use crate::service::Service;

/// A signed, expiring link to one file of a recording.
pub struct Download {
    pub file: String,
    pub url: String,
    pub expires_unix: i64,
}

impl Service {
    /// Links to the files of a stopped recording on the node that holds them; none when
    /// the controller has no download key or the node serves no downloads.
    pub fn download_links(&self, r: &Recording) -> Vec<Download> {
        let Some((key, ttl)) = &self.downloads else {
            return Vec::new();
        };
        if r.state != RecordingState::Stopped {
            return Vec::new();
        }
        let base = self.view.read(|v| {
            v.recording
                .get(&r.node)
                .and_then(|n| n.download_url.clone())
        });
        let Some(base) = base else {
            return Vec::new();
        };
        let expires = common::unix_ms() / 1000 + ttl.as_secs() as i64;
        let id = r.id.as_str();
        r.files
            .iter()
            .map(|f| {
                let sig = common::download::sign(key, id, f, expires);
                Download {
                    file: f.clone(),
                    url: format!(
                        "{}/v1/files/{id}/{f}?expires={expires}&sig={sig}",
                        base.trim_end_matches('/'),
                    ),
                    expires_unix: expires,
                }
            })
            .collect()
    }
}
