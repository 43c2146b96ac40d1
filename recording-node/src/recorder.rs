//! One recording: subscribes to the meeting on its media node over the relay, feeds every
//! announced track into the pipelines (`pipeline`), and at the end writes
//! `manifest.json` (`manifest`). Tracks come and go with participants: an audio file
//! per participant audio track, a tile per video track.
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use proto::v1::relay_control::Msg;
use proto::v1::{KeyframeRequest, LayerRequest, RecordingGap, RelayControl, RelayHello, Subscribe};
use tokio_util::sync::CancellationToken;

use crate::error::{RecordingError, io};
use crate::manifest::{FileEntry, Gap, Manifest, ParticipantEntry};
use crate::pipeline::{AudioFile, Composite};
use crate::spec::{CompositeSpec, TrackSpec, parse_codec};

/// What to record and where.
#[derive(Clone, Debug)]
pub struct RecordingRequest {
    pub recording_id: String,
    pub meeting_id: String,
    pub node_id: String,
    /// This recording's directory (under the classification's storage).
    pub dir: PathBuf,
    pub media_node_id: String,
    pub media_relay_addr: SocketAddr,
    pub composite: CompositeSpec,
    /// 1, or more when the recording moved here after a node was lost.
    pub segment: u32,
    /// When the first segment started (0: this one is the first).
    pub recording_started_unix_ms: i64,
    /// Gaps so far (times in unix ms).
    pub gaps: Vec<RecordingGap>,
    pub earlier_nodes: Vec<String>,
    /// Some(why) while a host has the recording paused: no media is taken, and the
    /// manifest has the gap.
    pub paused: tokio::sync::watch::Receiver<Option<String>>,
}

/// Counters a recording adds to.
#[derive(Clone)]
pub struct RecorderMetrics {
    pub packets: prometheus::IntCounter,
    pub bytes_written: prometheus::IntCounter,
}

/// Tells the media node the size of each video track's tile that changed since `shown`
/// (the gallery is laid out again as tracks come and go): it sends the simulcast layer
/// that fits, so that the composite decodes no more than it paints.
async fn tell_tile_sizes(
    writer: &mut relay::ControlWriter,
    composite: &Composite,
    shown: &mut HashMap<u32, (u32, u32)>,
) -> Result<(), RecordingError> {
    for (track_id, tile) in composite.tiles() {
        let size = (tile.width.max(0) as u32, tile.height.max(0) as u32);
        if shown.insert(track_id, size) == Some(size) {
            continue;
        }
        let layer = LayerRequest {
            track_id,
            width: size.0,
            height: size.1,
            ..LayerRequest::default()
        };
        writer
            .send(&RelayControl {
                msg: Some(Msg::Layer(layer)),
            })
            .await?;
    }
    Ok(())
}

/// Records until `stop` is cancelled or the media node ends the link; returns the
/// manifest it wrote.
pub async fn record(
    req: RecordingRequest,
    endpoint: quinn::Endpoint,
    metrics: RecorderMetrics,
    stop: CancellationToken,
) -> Result<Manifest, RecordingError> {
    std::fs::create_dir_all(&req.dir).map_err(io(format!("creating {}", req.dir.display())))?;
    let hello = RelayControl {
        msg: Some(Msg::Hello(RelayHello {
            node_id: req.node_id.clone(),
            meeting_id: req.meeting_id.clone(),
            sink_only: true,
        })),
    };
    let link = relay::connect(&endpoint, req.media_relay_addr, &req.media_node_id, &hello)
        .await
        .map_err(|source| RecordingError::Subscribe {
            node: req.media_node_id.clone(),
            source,
        })?;
    let relay::Link {
        connection,
        mut writer,
        mut reader,
    } = link;
    let started = Instant::now();
    let segment_started_unix_ms = common::unix_ms();
    let recording_started_unix_ms = if req.recording_started_unix_ms > 0 {
        req.recording_started_unix_ms
    } else {
        segment_started_unix_ms
    };
    // Offsets in the manifest count from the recording's start, across segments.
    let since_start = (segment_started_unix_ms - recording_started_unix_ms).max(0) as u64;
    let segment = req.segment.max(1);
    let composite_path = req
        .dir
        .join(crate::spec::segment_file_name("composite", "mp4", segment));
    let mut composite = Composite::start(req.composite, &composite_path)?;
    let mut audio: HashMap<u32, (AudioFile, String)> = HashMap::new();
    let mut tracks: HashMap<u32, TrackSpec> = HashMap::new();
    let mut participants: BTreeMap<String, ParticipantEntry> = BTreeMap::new();
    let mut finished_audio: Vec<(PathBuf, String)> = Vec::new();
    let to_offset = |unix_ms: i64| (unix_ms - recording_started_unix_ms).max(0) as u64;
    let mut paused = req.paused.clone();
    let mut pausable = true;
    // A segment that starts paused goes on with the open gap its pause left.
    let mut gaps: Vec<Gap> = req
        .gaps
        .iter()
        .map(|g| Gap {
            start_offset_ms: to_offset(g.start_unix_ms),
            end_offset_ms: (g.end_unix_ms > 0).then(|| to_offset(g.end_unix_ms)),
            reason: g.reason.clone(),
        })
        .collect();
    let offset = |at: Instant| since_start + at.duration_since(started).as_millis() as u64;
    // The gap of the pause in force, if one is.
    let mut pause: Option<usize> = if paused.borrow_and_update().is_some() {
        gaps.iter().rposition(|g| g.end_offset_ms.is_none())
    } else {
        None
    };
    if pause.is_none()
        && let Some(why) = paused.borrow().clone()
    {
        gaps.push(Gap {
            start_offset_ms: offset(started),
            end_offset_ms: None,
            reason: why,
        });
        pause = Some(gaps.len() - 1);
    }
    // The size each video track's tile was last told to the media node at.
    let mut shown: HashMap<u32, (u32, u32)> = HashMap::new();
    // The pipeline's errors are looked at twice a second, not per packet.
    let mut check = tokio::time::interval(std::time::Duration::from_millis(500));
    let mut link_lost = false;

    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = paused.changed(), if pausable => {
                if changed.is_err() {
                    // Its sender went with the node's record of it: stopping.
                    pausable = false;
                    continue;
                }
                let now = paused.borrow_and_update().clone();
                match (now, pause) {
                    (Some(why), None) => {
                        gaps.push(Gap {
                            start_offset_ms: offset(Instant::now()),
                            end_offset_ms: None,
                            reason: why,
                        });
                        pause = Some(gaps.len() - 1);
                        tracing::info!(recording = %req.recording_id, "paused: no media is taken");
                    }
                    (None, Some(i)) => {
                        gaps[i].end_offset_ms = Some(offset(Instant::now()));
                        pause = None;
                        // Pictures start again from a keyframe.
                        for t in tracks.values().filter(|t| !t.codec.is_audio()) {
                            writer.send(&RelayControl { msg: Some(Msg::Keyframe(KeyframeRequest { track_id: t.track_id, layer: 0 })) }).await?;
                        }
                        tracing::info!(recording = %req.recording_id, "resumed");
                    }
                    _ => {}
                }
            }
            _ = check.tick() => {
                if let Some(e) = composite.error() {
                    return Err(RecordingError::Pipeline(format!(
                        "the composite pipeline failed: {e}"
                    )));
                }
                // A participant's file that failed stops there; the rest goes on.
                let failed: Vec<(u32, String)> = audio
                    .iter()
                    .filter_map(|(id, (f, _))| f.error().map(|e| (*id, e)))
                    .collect();
                for (id, e) in failed {
                    if let Some((_, pid)) = audio.remove(&id) {
                        tracing::error!(participant = %pid, error = %e, "a participant's audio file failed");
                        gaps.push(Gap {
                            start_offset_ms: offset(Instant::now()),
                            end_offset_ms: None,
                            reason: format!("the audio file of {pid} failed: {e}"),
                        });
                    }
                }
            }
            m = reader.recv() => match m {
                Ok(Some(RelayControl { msg: Some(Msg::Announce(a)) })) => {
                    let codec = match parse_codec(&a.codec) {
                        Ok(c) => c,
                        Err(e) => { tracing::warn!(error = %e, "track not recorded"); continue; }
                    };
                    let spec = TrackSpec {
                        track_id: a.track_id,
                        participant_id: a.participant_id.clone(),
                        participant_name: a.participant_name.clone(),
                        codec,
                        payload_type: a.payload_type.min(127) as u8,
                    };
                    composite.add(&spec)?;
                    if codec.is_audio() {
                        audio.insert(a.track_id, (AudioFile::start(&spec, &req.dir, segment)?, a.participant_id.clone()));
                    }
                    let now = offset(Instant::now());
                    participants.entry(a.participant_id.clone()).or_insert_with(|| ParticipantEntry {
                        participant_id: a.participant_id.clone(),
                        name: a.participant_name.clone(),
                        joined_offset_ms: now,
                        left_offset_ms: None,
                    });
                    tracks.insert(a.track_id, spec);
                    writer.send(&RelayControl { msg: Some(Msg::Subscribe(Subscribe { track_id: a.track_id, layer: 0, layers: 0 })) }).await?;
                    tell_tile_sizes(&mut writer, &composite, &mut shown).await?;
                }
                Ok(Some(RelayControl { msg: Some(Msg::Remove(r)) })) => {
                    composite.remove(r.track_id);
                    shown.remove(&r.track_id);
                    tell_tile_sizes(&mut writer, &composite, &mut shown).await?;
                    if let Some(spec) = tracks.remove(&r.track_id) {
                        if let Some((file, pid)) = audio.remove(&r.track_id) {
                            let path = tokio::task::spawn_blocking(move || file.finish()).await??;
                            finished_audio.push((path, pid));
                        }
                        if !tracks.values().any(|t| t.participant_id == spec.participant_id)
                            && let Some(p) = participants.get_mut(&spec.participant_id)
                        {
                            p.left_offset_ms = Some(offset(Instant::now()));
                        }
                    }
                }
                Ok(Some(RelayControl { msg: Some(Msg::Speaker(s)) })) => {
                    composite.highlight(&s.participant_id);
                }
                Ok(Some(other)) => tracing::debug!(?other, "relay message ignored"),
                Ok(None) | Err(_) => {
                    link_lost = true;
                    break;
                }
            },
            d = relay::recv_media(&connection) => match d {
                Ok(Ok(_)) if pause.is_some() => {}
                Ok(Ok((track_id, rtp))) => {
                    metrics.packets.inc();
                    composite.push(track_id, &rtp);
                    if let Some((file, _)) = audio.get(&track_id) {
                        file.push(&rtp);
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "relay datagram skipped"),
                Err(_) => {
                    link_lost = true;
                    break;
                }
            },
        }
    }
    if link_lost {
        // The media node went away or closed the meeting: finish what we have.
        gaps.push(Gap {
            start_offset_ms: offset(Instant::now()),
            end_offset_ms: None,
            reason: "the media node ended the relay link".into(),
        });
    }
    let end_at = composite.now();
    connection.close(0u32.into(), b"recording stopped");
    let duration = started.elapsed();
    let end = offset(Instant::now());
    for p in participants.values_mut() {
        p.left_offset_ms.get_or_insert(end);
    }
    let composite_done = tokio::task::spawn_blocking(move || composite.finish(end_at));
    for (_, (file, pid)) in audio.drain() {
        let path = tokio::task::spawn_blocking(move || file.finish()).await??;
        finished_audio.push((path, pid));
    }
    let composite_path = composite_done.await??;
    let mut files = Vec::new();
    for (path, pid) in finished_audio {
        files.push(FileEntry::describe(&path, "audio", Some(pid)).await?);
    }
    files.push(FileEntry::describe(&composite_path, "composite", None).await?);
    metrics
        .bytes_written
        .inc_by(files.iter().map(|f| f.bytes).sum());
    let manifest = Manifest {
        recording_id: req.recording_id,
        meeting_id: req.meeting_id,
        node_id: req.node_id,
        started_unix_ms: recording_started_unix_ms,
        segment,
        segment_started_unix_ms,
        earlier_nodes: req.earlier_nodes,
        duration_ms: duration.as_millis() as u64,
        participants: participants.into_values().collect(),
        files,
        gaps,
    };
    manifest.write(&req.dir).await?;
    Ok(manifest)
}
