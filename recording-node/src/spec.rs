//! What a recording is made of, as plain data and pure functions: the tracks it receives,
//! the gallery layout of the composite, file names and RTP caps. The GStreamer side
//! (`pipeline`) only carries these out, so everything here is tested without GStreamer.
use std::fmt;

pub use relay::Codec;

/// What the recording pipeline needs of a codec besides what the relay says of it.
pub trait CodecExt {
    /// RTP encoding name, as GStreamer's caps spell it.
    fn encoding_name(self) -> &'static str;
    /// The GStreamer depayloader and decoder for this codec.
    fn depay_and_decoder(self) -> (&'static str, &'static str);
}

impl CodecExt for Codec {
    fn encoding_name(self) -> &'static str {
        match self {
            Codec::Opus => "OPUS",
            Codec::Vp8 => "VP8",
            Codec::H264 => "H264",
        }
    }

    fn depay_and_decoder(self) -> (&'static str, &'static str) {
        match self {
            Codec::Opus => ("rtpopusdepay", "opusdec"),
            Codec::Vp8 => ("rtpvp8depay", "vp8dec"),
            Codec::H264 => ("rtph264depay", "avdec_h264"),
        }
    }
}

/// Parses a relay codec name, saying which codecs are recorded when it is none of them.
pub fn parse_codec(s: &str) -> Result<Codec, SpecError> {
    Codec::parse(s)
        .ok_or_else(|| SpecError(format!("codec {s:?} is not recorded (opus, vp8, h264)")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// One track of one participant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSpec {
    pub track_id: u32,
    pub participant_id: String,
    pub participant_name: String,
    pub codec: Codec,
    pub payload_type: u8,
}

impl TrackSpec {
    /// Caps of the RTP stream, for `appsrc`.
    pub fn rtp_caps(&self) -> String {
        let (name, rate) = (self.codec.encoding_name(), self.codec.clock_rate());
        let media = if self.codec.is_audio() {
            "audio"
        } else {
            "video"
        };
        format!(
            "application/x-rtp,media={media},encoding-name={name},clock-rate={rate},payload={}",
            self.payload_type
        )
    }

    /// The participant's audio file in `segment` of the recording: Ogg Opus, named by
    /// participant (readable name, then the id that makes it unique).
    pub fn audio_file_name(&self, segment: u32) -> String {
        segment_file_name(
            &format!(
                "audio-{}-{}",
                file_safe(&self.participant_name),
                file_safe(&self.participant_id)
            ),
            "ogg",
            segment,
        )
    }
}

/// A file of `segment` (the first keeps the plain name; a recording that moved to
/// another node goes on in `name-s2.ext`, ...), so that segments never overwrite each
/// other in a shared storage.
pub fn segment_file_name(name: &str, ext: &str, segment: u32) -> String {
    if segment <= 1 {
        format!("{name}.{ext}")
    } else {
        format!("{name}-s{segment}.{ext}")
    }
}

/// `s` with everything but ASCII letters, digits, `-` and `_` replaced by `_`, at most
/// 40 characters, never empty: safe as part of a file name on any file system.
pub fn file_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() { "_".into() } else { out }
}

/// The composite video's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompositeSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    /// x264's speed preset: the faster, the more composites a core keeps up with, for a
    /// little quality at the same bitrate (`fjord-bench-recording --preset` measures).
    pub preset: Preset,
}

/// x264's speed presets that keep a live composite in real time on a server core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Measured on 2 cores (fjord-bench-recording, 2 composites of 4): about 12 % less
    /// CPU than superfast; at the composite's 2 Mbit/s its pictures still look clean (a
    /// frame: `--frame`).
    #[default]
    Ultrafast,
    Superfast,
    Veryfast,
    Faster,
}

impl Preset {
    pub const ALL: [Preset; 4] = [
        Preset::Ultrafast,
        Preset::Superfast,
        Preset::Veryfast,
        Preset::Faster,
    ];
    /// As x264enc's `speed-preset` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Ultrafast => "ultrafast",
            Preset::Superfast => "superfast",
            Preset::Veryfast => "veryfast",
            Preset::Faster => "faster",
        }
    }
    pub fn parse(s: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl Default for CompositeSpec {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 25,
            video_kbps: 2_000,
            preset: Preset::default(),
        }
    }
}

impl CompositeSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        let even = |v: u32| (16..=4096).contains(&v) && v.is_multiple_of(2);
        if !even(self.width) || !even(self.height) {
            return Err(SpecError(format!(
                "composite size {}x{} must be even and between 16 and 4096",
                self.width, self.height
            )));
        }
        if !(1..=60).contains(&self.fps) {
            return Err(SpecError(format!(
                "composite fps {} must be 1 to 60",
                self.fps
            )));
        }
        if !(100..=20_000).contains(&self.video_kbps) {
            return Err(SpecError(format!(
                "composite bitrate {} kbit/s must be 100 to 20000",
                self.video_kbps
            )));
        }
        Ok(())
    }
}

/// A tile of the composite, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

/// The colour of the frame around the active speaker's tile (ARGB: amber).
pub const SPEAKER_FRAME_ARGB: u32 = 0xff_ff_c0_00;

/// The four bars (top, bottom, left, right) that frame `t` from the inside, as thick as
/// a 90th of its height (2 to 6 pixels): the active speaker's highlight.
pub fn frame_bars(t: &Tile) -> [Tile; 4] {
    let b = (t.height / 90).clamp(2, 6);
    [
        Tile { height: b, ..*t },
        Tile {
            y: t.y + t.height - b,
            height: b,
            ..*t
        },
        Tile { width: b, ..*t },
        Tile {
            x: t.x + t.width - b,
            width: b,
            ..*t
        },
    ]
}

/// Gallery of `n` tiles on a `width` x `height` canvas: the grid with the fewest columns
/// that holds them (columns = ceil(sqrt(n))), each cell the same size, in reading order.
/// Pictures keep their aspect ratio inside their cell (the compositor letterboxes).
pub fn gallery(n: usize, width: u32, height: u32) -> Vec<Tile> {
    if n == 0 {
        return Vec::new();
    }
    let cols = (1..).find(|c| c * c >= n).unwrap_or(1);
    let rows = n.div_ceil(cols);
    let (cw, ch) = (width as i32 / cols as i32, height as i32 / rows as i32);
    // The last row is centred when it is not full.
    let last_row_count = n - (rows - 1) * cols;
    (0..n)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            let offset = if r == rows - 1 {
                (cols - last_row_count) as i32 * cw / 2
            } else {
                0
            };
            Tile {
                x: offset + c as i32 * cw,
                y: r as i32 * ch,
                width: cw,
                height: ch,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(a: &Tile, b: &Tile) -> bool {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    }

    #[test]
    fn the_speakers_frame_lies_on_the_inside_edges_of_the_tile() {
        let t = Tile {
            x: 640,
            y: 360,
            width: 640,
            height: 360,
        };
        let [top, bottom, left, right] = frame_bars(&t);
        assert_eq!(
            top,
            Tile {
                x: 640,
                y: 360,
                width: 640,
                height: 4
            }
        );
        assert_eq!(
            bottom,
            Tile {
                x: 640,
                y: 716,
                width: 640,
                height: 4
            }
        );
        assert_eq!(
            left,
            Tile {
                x: 640,
                y: 360,
                width: 4,
                height: 360
            }
        );
        assert_eq!(
            right,
            Tile {
                x: 1276,
                y: 360,
                width: 4,
                height: 360
            }
        );
        let small = Tile { height: 90, ..t };
        assert_eq!(frame_bars(&small)[0].height, 2, "never thinner than 2 px");
        let big = Tile { height: 1080, ..t };
        assert_eq!(frame_bars(&big)[0].height, 6, "never thicker than 6 px");
    }

    #[test]
    fn gallery_tiles_fill_the_canvas_without_overlapping() {
        assert!(gallery(0, 1280, 720).is_empty());
        assert_eq!(
            gallery(1, 1280, 720),
            vec![Tile {
                x: 0,
                y: 0,
                width: 1280,
                height: 720
            }]
        );
        let two = gallery(2, 1280, 720);
        assert_eq!((two[0].x, two[1].x, two[0].width), (0, 640, 640));
        for n in 1..=25 {
            let tiles = gallery(n, 1280, 720);
            assert_eq!(tiles.len(), n);
            for (i, a) in tiles.iter().enumerate() {
                assert!(a.x >= 0 && a.y >= 0 && a.x + a.width <= 1280 && a.y + a.height <= 720);
                assert!(a.width > 0 && a.height > 0);
                for b in &tiles[i + 1..] {
                    assert!(!overlap(a, b), "{n} tiles: {a:?} overlaps {b:?}");
                }
            }
        }
        // Three: two on top, one centred below.
        let three = gallery(3, 1280, 720);
        assert_eq!(three[2].x, 320);
        assert_eq!(three[2].y, 360);
    }

    #[test]
    fn file_names_are_safe_and_name_the_participant() {
        let t = TrackSpec {
            track_id: 1,
            participant_id: "p1abc".into(),
            participant_name: "Åse / ../../etc".into(),
            codec: Codec::Opus,
            payload_type: 111,
        };
        assert_eq!(t.audio_file_name(1), "audio-_se_________etc-p1abc.ogg");
        assert_eq!(t.audio_file_name(2), "audio-_se_________etc-p1abc-s2.ogg");
        assert_eq!(segment_file_name("composite", "mp4", 0), "composite.mp4");
        assert_eq!(segment_file_name("composite", "mp4", 3), "composite-s3.mp4");
        assert_eq!(file_safe(""), "_");
        assert_eq!(file_safe(&"x".repeat(100)).len(), 40);
    }

    #[test]
    fn codecs_parse_from_names_and_mime_types_and_refuse_the_rest() {
        assert_eq!(parse_codec("opus"), Ok(Codec::Opus));
        assert_eq!(parse_codec("video/VP8"), Ok(Codec::Vp8));
        assert_eq!(parse_codec("H264"), Ok(Codec::H264));
        let e = parse_codec("video/AV1").unwrap_err();
        assert!(e.0.contains("opus, vp8, h264"), "{e}");
        assert!(parse_codec("").is_err());
    }

    #[test]
    fn rtp_caps_name_the_codec_clock_and_payload_type() {
        let t = TrackSpec {
            track_id: 2,
            participant_id: "p".into(),
            participant_name: "n".into(),
            codec: Codec::Vp8,
            payload_type: 96,
        };
        assert_eq!(
            t.rtp_caps(),
            "application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96"
        );
    }

    #[test]
    fn composite_specs_are_checked() {
        assert!(CompositeSpec::default().validate().is_ok());
        let odd = CompositeSpec {
            width: 641,
            ..Default::default()
        };
        assert!(odd.validate().is_err());
        let fast = CompositeSpec {
            fps: 0,
            ..Default::default()
        };
        assert!(fast.validate().is_err());
    }
}
