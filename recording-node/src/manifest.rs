//! `manifest.json`: what a recording holds — meeting, participants with join and leave
//! offsets, every file with its duration, size and sha256, and the gaps with their
//! reason. Written atomically (temporary file, then rename) so that a reader never sees
//! half of it.
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RecordingError, io};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub recording_id: String,
    pub meeting_id: String,
    pub node_id: String,
    /// When the recording's first segment started: offsets count from here.
    pub started_unix_ms: i64,
    /// This segment: 1, or more when the recording moved here after a node was lost.
    pub segment: u32,
    /// When this segment started.
    pub segment_started_unix_ms: i64,
    /// Nodes that recorded the earlier segments (their files are in their storage).
    pub earlier_nodes: Vec<String>,
    /// Of this segment.
    pub duration_ms: u64,
    pub participants: Vec<ParticipantEntry>,
    pub files: Vec<FileEntry>,
    pub gaps: Vec<Gap>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParticipantEntry {
    pub participant_id: String,
    pub name: String,
    /// From the start of the recording.
    pub joined_offset_ms: u64,
    pub left_offset_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// The file's name in the recording's directory.
    pub name: String,
    /// `audio` (one participant) or `composite`.
    pub kind: String,
    pub participant_id: Option<String>,
    pub duration_ms: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Gap {
    pub start_offset_ms: u64,
    /// None: up to the end of the recording.
    pub end_offset_ms: Option<u64>,
    pub reason: String,
}

/// The sha256 of a file's contents, in lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl FileEntry {
    /// Measures a finished file: size, sha256, and duration by decoding it.
    pub async fn describe(
        path: &Path,
        kind: &str,
        participant_id: Option<String>,
    ) -> Result<Self, RecordingError> {
        let p = path.to_owned();
        let kind = kind.to_owned();
        tokio::task::spawn_blocking(move || {
            let duration = if kind == "composite" {
                crate::probe::composite(&p)?.duration
            } else {
                crate::probe::audio(&p)?.duration
            };
            let measuring = || format!("measuring {}", p.display());
            Ok(Self {
                name: p
                    .file_name()
                    .ok_or_else(|| {
                        RecordingError::Invalid(format!("{}: no file name", p.display()))
                    })?
                    .to_string_lossy()
                    .into_owned(),
                kind,
                participant_id,
                duration_ms: duration.as_millis() as u64,
                bytes: std::fs::metadata(&p).map_err(io(measuring()))?.len(),
                sha256: sha256_file(&p).map_err(io(measuring()))?,
            })
        })
        .await?
    }
}

impl Manifest {
    /// Writes `manifest.json` in `dir`. The manifest of an earlier segment recorded in
    /// the same dir (the meeting's media node was lost and the recording went on fed by
    /// its new one) is kept as `manifest-segment-<n>.json` first.
    pub async fn write(&self, dir: &Path) -> Result<(), RecordingError> {
        let current = dir.join("manifest.json");
        if let Ok(old) = tokio::fs::read(&current).await
            && let Ok(old) = serde_json::from_slice::<Manifest>(&old)
            && old.segment < self.segment
        {
            let keep = dir.join(Self::segment_name(old.segment));
            tokio::fs::rename(&current, &keep)
                .await
                .map_err(io(format!("keeping {}", keep.display())))?;
        }
        let json = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        let tmp = dir.join("manifest.json.tmp");
        let writing = || format!("writing {}", tmp.display());
        tokio::fs::write(&tmp, json).await.map_err(io(writing()))?;
        tokio::fs::rename(&tmp, current)
            .await
            .map_err(io(writing()))?;
        Ok(())
    }

    /// What the manifest of segment `n` is called once a later segment's is written.
    pub fn segment_name(n: u32) -> String {
        common::download::segment_manifest_name(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_later_segments_manifest_keeps_the_earlier_ones_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = |segment| Manifest {
            recording_id: "rec-1".into(),
            meeting_id: "abc-defg-hij".into(),
            node_id: "recording-oslo-1".into(),
            started_unix_ms: 1,
            segment,
            segment_started_unix_ms: 1,
            earlier_nodes: vec![],
            duration_ms: 1,
            participants: vec![],
            files: vec![],
            gaps: vec![],
        };
        m(1).write(dir.path()).await.unwrap();
        m(2).write(dir.path()).await.unwrap();
        let read = |name: &str| -> Manifest {
            serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap()
        };
        assert_eq!(read("manifest.json").segment, 2);
        assert_eq!(read(&Manifest::segment_name(1)).segment, 1);
        // Written again (a retried stop), the same segment replaces itself.
        m(2).write(dir.path()).await.unwrap();
        assert_eq!(read("manifest.json").segment, 2);
        assert!(!dir.path().join(Manifest::segment_name(2)).exists());
    }

    #[test]
    fn sha256_of_a_file_is_its_contents_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
