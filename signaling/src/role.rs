use serde::{Deserialize, Serialize};

/// A participant's role in a meeting. Hosts and co-hosts run it (the host alone ends
/// it and makes or unmakes hosts); in a webinar attendees watch and listen only and
/// panelists publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Host,
    CoHost,
    Panelist,
    #[default]
    Attendee,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Host, Role::CoHost, Role::Panelist, Role::Attendee];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::CoHost => "co-host",
            Role::Panelist => "panelist",
            Role::Attendee => "attendee",
        }
    }

    /// The role spelled `name` (as on the wire), if there is one.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether the role runs the meeting (host or co-host).
    pub fn is_host(self) -> bool {
        matches!(self, Role::Host | Role::CoHost)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn roles_read_back_as_they_are_spelled_on_the_wire() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), r);
        }
        assert_eq!(Role::parse("Host"), None);
        assert_eq!(Role::parse("cohost"), None);
        assert!(Role::CoHost.is_host() && !Role::Panelist.is_host());
    }
}
