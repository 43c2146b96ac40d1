//! The config loader as each binary runs it: a TOML file over the defaults, then the
//! binary's checks. Whatever the file holds, loading ends in a config or an error that
//! says what is wrong; it never panics.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::config::{ConfigError, load};
use libfuzzer_sys::fuzz_target;

/// The one file every run rewrites (in a folder that lives as long as the process).
fn file() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("fjord.toml");
        (dir, path)
    });
    path
}

fn said(r: Result<(), ConfigError>) {
    if let Err(e) = r {
        assert!(!e.to_string().is_empty());
    }
}

fn check<C>(validate: impl Fn(&C) -> Result<(), ConfigError>)
where
    C: serde::de::DeserializeOwned + serde::Serialize + Default,
{
    // No variable has this prefix: the file alone speaks.
    said(load::<C>(Some(file()), "FJORD_FUZZ_NONE__").and_then(|c| validate(&c)));
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(file(), data).expect("the config file is written");
    check::<media_node::config::MediaNodeConfig>(|c| c.validate());
    check::<controller::config::ControllerConfig>(|c| c.validate().map(|_| ()));
    check::<recording_node::config::RecordingNodeConfig>(|c| c.validate());
});
