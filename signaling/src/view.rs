//! Receive slots: what a client shows (`view`), which decides the media it receives, and
//! what the node tells it back — which participant each of its receive m-lines carries
//! now (`slots`) and which of its own simulcast layers anyone needs (`publish_layers`).
//!
//! A participant's connection has a fixed set of receive m-lines: `audio_slots` for the
//! loudest speakers, `video_slots` for the tiles it shows, and one for a screen share.
//! The node fills them; when someone joins, leaves, mutes or speaks, it moves who feeds
//! which slot, and the SDP stays as it is.
use serde::{Deserialize, Serialize};

use crate::MediaKind;

/// Most video slots a client may ask for (a 7×7 gallery).
pub const MAX_VIDEO_SLOTS: u32 = 49;
/// Most audio slots a client may ask for.
pub const MAX_AUDIO_SLOTS: u32 = 8;
/// Audio slots a client gets unless it asks: the three loudest speakers.
pub const DEFAULT_AUDIO_SLOTS: u32 = 3;
/// Video slots a client that declares no view gets (a 3×3 gallery).
pub const DEFAULT_VIDEO_SLOTS: u32 = 9;
/// Most participants a view may pin.
pub const MAX_PINNED: usize = 9;
/// The largest tile side, in pixels.
pub const MAX_TILE_PX: u32 = 8192;
/// The highest gallery page a view may ask for (10,000 participants in pages of one).
pub const MAX_PAGE: u32 = 10_000;

/// How the client lays its tiles out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewMode {
    /// Tiles of equal size, a page at a time; page 0 leads with whoever speaks.
    #[default]
    Gallery,
    /// One large tile (slot 0: a pinned participant, else the active speaker) and the
    /// rest as thumbnails.
    Speaker,
}

/// A tile's size on screen, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileSize {
    pub width: u32,
    pub height: u32,
}

/// `view`: what the client shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    #[serde(default)]
    pub mode: ViewMode,
    /// How many videos it shows (1 to [`MAX_VIDEO_SLOTS`]).
    pub video_slots: u32,
    /// How many speakers it hears at once (1 to [`MAX_AUDIO_SLOTS`]).
    #[serde(default = "default_audio_slots")]
    pub audio_slots: u32,
    /// The gallery page (0: the first, which leads with whoever speaks).
    #[serde(default)]
    pub page: u32,
    /// The size of each video slot's tile, in slot order; slots past the list's end
    /// take its last size; none at all: the low layer's size (320×180).
    #[serde(default)]
    pub tiles: Vec<TileSize>,
    /// Participants the client keeps in view, first in slot order.
    #[serde(default)]
    pub pinned: Vec<String>,
}

fn default_audio_slots() -> u32 {
    DEFAULT_AUDIO_SLOTS
}

impl View {
    /// The view a client gets that declared none.
    pub fn default_for_client() -> Self {
        Self {
            mode: ViewMode::Gallery,
            video_slots: DEFAULT_VIDEO_SLOTS,
            audio_slots: DEFAULT_AUDIO_SLOTS,
            page: 0,
            tiles: Vec::new(),
            pinned: Vec::new(),
        }
    }

    /// Why the node refuses this view (the session goes on with the view it had), or
    /// nothing when it is within the limits.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_VIDEO_SLOTS).contains(&self.video_slots) {
            return Err(format!("video_slots: 1 to {MAX_VIDEO_SLOTS}"));
        }
        if !(1..=MAX_AUDIO_SLOTS).contains(&self.audio_slots) {
            return Err(format!("audio_slots: 1 to {MAX_AUDIO_SLOTS}"));
        }
        if self.page > MAX_PAGE {
            return Err(format!("page: 0 to {MAX_PAGE}"));
        }
        if self.tiles.len() > MAX_VIDEO_SLOTS as usize {
            return Err(format!("tiles: at most {MAX_VIDEO_SLOTS}"));
        }
        if self
            .tiles
            .iter()
            .any(|t| t.width > MAX_TILE_PX || t.height > MAX_TILE_PX)
        {
            return Err(format!("tiles: at most {MAX_TILE_PX} pixels a side"));
        }
        if self.pinned.len() > MAX_PINNED {
            return Err(format!("pinned: at most {MAX_PINNED} participants"));
        }
        Ok(())
    }

    /// The tile size of video slot `i`.
    pub fn tile(&self, i: usize) -> TileSize {
        self.tiles
            .get(i)
            .or(self.tiles.last())
            .copied()
            .unwrap_or(TileSize {
                width: 320,
                height: 180,
            })
    }
}

/// One receive m-line of the client and what it carries now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub mid: String,
    pub kind: MediaKind,
    /// The slot for a screen share (one video slot of its own).
    #[serde(default)]
    pub screen: bool,
    /// Whose media it carries; None while it carries nothing.
    pub participant_id: Option<String>,
    /// Video: the simulcast layer it carries (`l`, `m`, `h`), when the source has layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(video_slots: u32) -> View {
        View {
            video_slots,
            ..View::default_for_client()
        }
    }

    #[test]
    fn views_outside_the_limits_are_refused_with_the_rule() {
        assert!(view(9).check().is_ok());
        assert!(view(49).check().is_ok());
        assert_eq!(view(0).check().unwrap_err(), "video_slots: 1 to 49");
        assert_eq!(view(10_000).check().unwrap_err(), "video_slots: 1 to 49");
        let mut v = view(4);
        v.audio_slots = 9;
        assert!(v.check().unwrap_err().starts_with("audio_slots"));
        let mut v = view(4);
        v.pinned = (0..10).map(|i| format!("p{i}")).collect();
        assert!(v.check().unwrap_err().starts_with("pinned"));
        let mut v = view(4);
        v.tiles = vec![TileSize {
            width: 9000,
            height: 10,
        }];
        assert!(v.check().unwrap_err().starts_with("tiles"));
        let mut v = view(4);
        v.page = MAX_PAGE + 1;
        assert!(v.check().unwrap_err().starts_with("page"));
    }

    #[test]
    fn slots_past_the_tile_list_take_its_last_size() {
        let mut v = view(4);
        assert_eq!(
            v.tile(3),
            TileSize {
                width: 320,
                height: 180
            }
        );
        v.tiles = vec![
            TileSize {
                width: 1280,
                height: 720,
            },
            TileSize {
                width: 320,
                height: 180,
            },
        ];
        assert_eq!(v.tile(0).width, 1280);
        assert_eq!(v.tile(1).width, 320);
        assert_eq!(v.tile(5).width, 320);
    }
}
