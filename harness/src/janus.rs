//! Janus (Debian's `janus` package), the peer SFU the forwarding benchmark compares the
//! media node with: started with a configuration written here, with nothing loaded but
//! the VideoRoom plugin and the HTTP transport (on loopback), and one room.
//!
//! Janus skips loopback interfaces when it gathers ICE candidates, so its media needs
//! another interface: run it inside the private network namespace of [`crate::netns`]
//! and it gathers on that namespace's veth only.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::Proc;

/// The room the configuration creates.
pub const ROOM: u64 = 1234;

/// A running Janus; killed when dropped.
pub struct Janus {
    pub proc: Proc,
    /// The HTTP API's base, `http://127.0.0.1:<port>/janus`.
    pub url: String,
    pub room: u64,
}

/// Where Debian put Janus's plugins and transports (`/usr/lib/<multiarch>/janus`).
fn lib_dir() -> anyhow::Result<PathBuf> {
    let usr_lib = Path::new("/usr/lib");
    for e in std::fs::read_dir(usr_lib)? {
        let dir = e?.path().join("janus");
        if dir.join("plugins/libjanus_videoroom.so").is_file() {
            return Ok(dir);
        }
    }
    bail!("Janus's VideoRoom plugin not found under /usr/lib/*/janus: install Debian's `janus`")
}

impl Janus {
    /// Writes a configuration under `dir` and starts `janus` with it, logging to `log`,
    /// its media on the namespace's interface (call [`crate::netns::rerun_inside`] or
    /// [`crate::netns::enter`] first); returns once its HTTP API answers.
    pub async fn start(dir: &Path, log: &Path) -> anyhow::Result<Janus> {
        let (iface, addr) = (crate::netns::IFACE, crate::netns::ADDR);
        let lib = lib_dir()?;
        // Folders of links to the one plugin and the one transport we want, so that
        // nothing else is loaded (Janus loads every library of its folders).
        for (folder, file) in [
            ("plugins", "libjanus_videoroom.so"),
            ("transports", "libjanus_http.so"),
        ] {
            let to = dir.join(folder);
            std::fs::create_dir_all(&to)?;
            let link = to.join(file);
            if !link.exists() {
                std::os::unix::fs::symlink(lib.join(folder).join(file), &link)?;
            }
        }
        for empty in ["events", "loggers"] {
            std::fs::create_dir_all(dir.join(empty))?;
        }
        let port = crate::free_port();
        let d = dir.display();
        std::fs::write(
            dir.join("janus.jcfg"),
            format!(
                r#"general: {{
    configs_folder = "{d}"
    plugins_folder = "{d}/plugins"
    transports_folder = "{d}/transports"
    events_folder = "{d}/events"
    loggers_folder = "{d}/loggers"
    debug_level = 3
    interface = "{addr}"
}}
media: {{
    ipv6 = false
}}
nat: {{
    ice_enforce_list = "{iface}"
    ignore_mdns = true
}}
"#
            ),
        )?;
        std::fs::write(
            dir.join("janus.transport.http.jcfg"),
            format!(
                r#"general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    ip = "127.0.0.1"
    port = {port}
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
"#
            ),
        )?;
        // Audio and video codecs as the media node forwards them; no bitrate cap (a cap
        // would make Janus ask publishers for less, which the lean peers ignore).
        std::fs::write(
            dir.join("janus.plugin.videoroom.jcfg"),
            format!(
                r#"general: {{
}}
room-{ROOM}: {{
    description = "fjord bench"
    publishers = 100
    bitrate = 0
    fir_freq = 0
    audiocodec = "opus"
    videocodec = "vp8"
    audiolevel_ext = true
    transport_wide_cc_ext = true
}}
"#
            ),
        )?;
        let proc = Proc::spawn_args(
            "janus",
            Path::new("janus"),
            vec![format!("--configs-folder={d}"), "--disable-colors".into()],
            log,
        )?;
        let url = format!("http://127.0.0.1:{port}/janus");
        let http = reqwest::Client::new();
        let info = format!("{url}/info");
        let up = crate::eventually(Duration::from_secs(15), "Janus's HTTP API", || async {
            if !proc.is_running() {
                return Some(false);
            }
            crate::http_ok(&http, &info).await.map(|()| true)
        })
        .await;
        match up {
            Ok(true) => Ok(Janus {
                proc,
                url,
                room: ROOM,
            }),
            Ok(false) => bail!(
                "janus exited at start; its log, {}:\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            ),
            Err(e) => Err(e).context(format!("janus did not come up; see {}", log.display())),
        }
    }
}
