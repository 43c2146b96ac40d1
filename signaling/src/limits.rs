//! The protocol's limits, defined once: the media node enforces them, the controller's
//! join applies the same name rule, and clients may check before sending.

/// A client message (one WebSocket text frame) is at most this long.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// A participant's display name: 1 to 64 printable characters (the controller's join,
/// a host's rename, a far node's participant all keep to it).
pub const MAX_NAME_CHARS: usize = 64;
/// A chat message: 1 to 2000 characters.
pub const MAX_CHAT_CHARS: usize = 2000;
/// Breakout rooms a host may create at once.
pub const MAX_BREAKOUT_ROOMS: u32 = 50;
/// How long breakout rooms stay open once a host closes them, unless they say; and the
/// longest they may say.
pub const BREAKOUT_CLOSE_SECS: u32 = 60;
pub const MAX_BREAKOUT_CLOSE_SECS: u32 = 600;
/// The reactions a client may send.
pub const REACTION_EMOJI: [&str; 8] = ["👍", "👏", "❤️", "😂", "😮", "🎉", "🤔", "👋"];

/// A display name as given (trimmed), or why it cannot be one.
pub fn display_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(format!("name: 1 to {MAX_NAME_CHARS} printable characters"));
    }
    Ok(name.to_owned())
}

/// `name` cut to [`MAX_NAME_CHARS`] (a name from a far node, which checked it already).
pub fn bounded_name(mut name: String) -> String {
    if let Some((at, _)) = name.char_indices().nth(MAX_NAME_CHARS) {
        name.truncate(at);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_is_trimmed_printable_and_at_most_64_characters() {
        assert_eq!(display_name("  Ada  ").unwrap(), "Ada");
        assert_eq!(display_name(&"é".repeat(64)).unwrap().chars().count(), 64);
        for bad in ["", "   ", "a\u{7}b", "line\nbreak"] {
            assert!(display_name(bad).is_err(), "{bad:?}");
        }
        assert!(display_name(&"é".repeat(65)).is_err());
        assert_eq!(bounded_name("ø".repeat(70)).chars().count(), 64);
        assert_eq!(bounded_name("short".into()), "short");
    }
}
