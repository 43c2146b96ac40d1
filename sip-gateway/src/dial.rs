//! What a caller dialled: the user part of the Request-URI, `<meeting-id>` or
//! `<meeting-id>.<password>` (room systems dial `sip:abc-defg-hij.secret@meet.uni.no`),
//! percent-decoded as RFC 3261 §19.1.2 escapes it.
use common::ids::MeetingId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dial {
    pub meeting: MeetingId,
    pub password: Option<String>,
}

/// Why a dial string names no meeting (answered 404 with this as the reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoMeeting(pub String);

/// The longest user part we read (a meeting id and a password fit many times over).
const MAX_USER: usize = 256;

pub fn parse(user: &str) -> Result<Dial, NoMeeting> {
    if user.is_empty() {
        return Err(NoMeeting(
            "no meeting id: dial <meeting-id>@ this gateway".into(),
        ));
    }
    if user.len() > MAX_USER {
        return Err(NoMeeting("the dialled name is too long".into()));
    }
    let user = percent_decode(user).ok_or_else(|| NoMeeting("a malformed %-escape".into()))?;
    let (id, password) = match user.split_once('.') {
        Some((id, pw)) => (id, Some(pw.to_owned())),
        None => (user.as_str(), None),
    };
    let meeting = MeetingId::parse(&id.to_ascii_lowercase())
        .map_err(|_| NoMeeting("that is not a meeting id".into()))?;
    if password
        .as_deref()
        .is_some_and(|p| p.is_empty() || p.chars().any(char::is_control))
    {
        return Err(NoMeeting("an empty or unprintable password".into()));
    }
    Ok(Dial { meeting, password })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meeting_id_with_or_without_a_password_and_garbage_refused() {
        let id = MeetingId::random().to_string();
        assert_eq!(parse(&id).unwrap().meeting.to_string(), id);
        assert_eq!(parse(&id).unwrap().password, None);
        let d = parse(&format!("{}.s%C3%B8t%20pw", id.to_uppercase())).unwrap();
        assert_eq!(
            (d.meeting.to_string(), d.password.as_deref()),
            (id.clone(), Some("søt pw"))
        );
        for bad in [
            String::new(),
            format!("{id}."),
            format!("{id}.%0A"),
            format!("{id}.%zz"),
            format!("{id}.%C3"),
            "%".into(),
            "x".repeat(300),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }
}
