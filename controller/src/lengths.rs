//! How long what callers send may be, and how much of it a message quotes back. A leaf:
//! the modules that check input (`meetings`, `join`, `schedule`, `registration`…) and
//! those that build messages all sit above it. (The display name's rule is the
//! signaling crate's, `signaling::limits::display_name`: the media node checks it too.)

/// A meeting's title.
pub const MAX_TITLE_CHARS: usize = 200;
/// A meeting's password, when it is set and when a joiner gives it.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// A meeting's description.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// At most `n` characters of `s`, to quote untrusted input in a message.
pub(crate) fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
