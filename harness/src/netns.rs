//! A private network for one test: the test re-runs itself inside a new network namespace
//! (`unshare --net`) that holds only loopback and a veth pair with addresses of its own,
//! so that a browser which will not use loopback for WebRTC (Firefox) has an ordinary
//! interface to talk on — without touching any address of the machine's own network.
//! Everything the test starts (etcd, nodes, browsers) inherits the namespace and is gone
//! with it. Janus, which never gathers candidates on loopback, runs there for the same
//! reason.
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::{Context, bail};

/// The address of the namespace's veth interface: media nodes listen on it.
pub const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
/// The name of that interface.
pub const IFACE: &str = "fjord0";
const PEER_ADDR: &str = "10.77.0.2/24";
const ENV: &str = "FJORD_TEST_NETNS";

/// Where the calling test is running.
pub enum Place {
    /// Inside the private namespace, which is set up: go on with the test.
    Inside,
    /// Outside: the test ran inside a namespace as a child process, which passed.
    RanInside,
}

/// Call first in a (synchronous) test named `test` (its full path in the test binary,
/// `module::name`): outside the namespace it re-runs the test inside one and fails if
/// that run fails; inside it sets the network up.
pub fn enter(test: &str) -> anyhow::Result<Place> {
    let args = ["--exact", test, "--nocapture", "--test-threads=1"].map(String::from);
    if std::env::var_os(ENV).is_some() {
        setup()?;
        return Ok(Place::Inside);
    }
    // The child's output goes on to ours as it comes, and its summary line says how many
    // tests it ran: a name that matched none (a renamed test) must fail, not pass.
    let mut child = unshare(&args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running `unshare` (util-linux) for a private network namespace")?;
    let stdout = child.stdout.take().context("the child's output")?;
    let mut passed = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.context("reading the child's output")?;
        println!("{line}");
        if let Some(n) = passed_count(&line) {
            passed = Some(n);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{test} failed inside its network namespace ({status}); its output is above");
    }
    match passed {
        Some(1) => Ok(Place::RanInside),
        Some(n) => {
            bail!("{test} ran {n} tests inside its network namespace, not 1: is the name right?")
        }
        None => bail!("{test} printed no test summary inside its network namespace"),
    }
}

/// The number of passed tests in libtest's summary line (`test result: ok. 1 passed; …`).
fn passed_count(line: &str) -> Option<u32> {
    let rest = line.strip_prefix("test result: ")?;
    let (_, rest) = rest.split_once(". ")?;
    rest.split_once(" passed")?.0.parse().ok()
}

fn unshare(args: &[String]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.arg("--net");
    // Without root, a user namespace maps us to root in it (needs unprivileged userns).
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    cmd.arg("--").arg(exe).args(args).env(ENV, "1");
    cmd
}

/// Call first in a program (a benchmark) that needs the private network: outside the
/// namespace it runs itself again inside one, with `args`, and fails if that run
/// fails; inside it sets the network up.
pub fn rerun_inside(what: &str, args: &[String]) -> anyhow::Result<Place> {
    if std::env::var_os(ENV).is_some() {
        setup()?;
        return Ok(Place::Inside);
    }
    let status = unshare(args)
        .status()
        .context("running `unshare` (util-linux) for a private network namespace")?;
    if !status.success() {
        bail!("{what} failed inside its network namespace ({status}); its output is above");
    }
    Ok(Place::RanInside)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn setup() -> anyhow::Result<()> {
    let addr = format!("{ADDR}/24");
    // A default route too: Firefox only gathers the default route's interface. It leads
    // nowhere but to the veth peer, inside this namespace.
    let steps: [&[&str]; 7] = [
        &["link", "set", "lo", "up"],
        &[
            "link", "add", "fjord0", "type", "veth", "peer", "name", "fjord1",
        ],
        &["addr", "add", &addr, "dev", IFACE],
        &["addr", "add", PEER_ADDR, "dev", "fjord1"],
        &["link", "set", IFACE, "up"],
        &["link", "set", "fjord1", "up"],
        &["route", "add", "default", "dev", IFACE],
    ];
    for args in steps {
        let out = Command::new("ip")
            .args(args)
            .output()
            .context("running `ip` (Debian's iproute2)")?;
        if !out.status.success() {
            bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::passed_count;

    #[test]
    fn the_summary_line_gives_the_count_of_tests_run() {
        assert_eq!(
            passed_count(
                "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 40 filtered out; finished in 9.1s"
            ),
            Some(1)
        );
        assert_eq!(
            passed_count(
                "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 41 filtered out"
            ),
            Some(0)
        );
        assert_eq!(passed_count("running 1 test"), None);
        assert_eq!(passed_count("test result: FAILED. garbage"), None);
    }
}
