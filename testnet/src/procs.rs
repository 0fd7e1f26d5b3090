//! Finding and signalling a federation's node processes safely, and choosing ports.
//!
//! Why not the PIDs recorded at `up`: a node an operator restarted by hand has another
//! PID, and a recorded PID may since belong to an unrelated process. A node is found
//! instead by what cannot be reused: a `credfed-node run` whose `--config` is a file of
//! this federation's directory, read from `/proc`. It is then signalled through a
//! pidfd opened *before* its command line is checked, so that the process checked is
//! the process signalled even if it exits and its PID is reused in between.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// A running node of a federation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProcess {
    /// Its PID now.
    pub pid: u32,
    /// The configuration file it was started with.
    pub config: PathBuf,
}

/// The `--config` argument of a `credfed-node run` command line (NUL-separated, as in
/// `/proc/<pid>/cmdline`), if that is what it is.
pub fn node_config_of(cmdline: &[u8]) -> Option<PathBuf> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let exe = args.first()?;
    let is_node = Path::new(std::str::from_utf8(exe).ok()?)
        .file_name()
        .is_some_and(|n| n == "credfed-node");
    if !is_node || args.get(1) != Some(&&b"run"[..]) {
        return None;
    }
    let at = args.iter().position(|a| *a == b"--config")?;
    Some(PathBuf::from(std::str::from_utf8(args.get(at + 1)?).ok()?))
}

/// Whether `config` is a node configuration inside `dir`.
fn belongs_to(config: &Path, dir: &Path) -> bool {
    let (Ok(c), Ok(d)) = (config.canonicalize(), dir.canonicalize()) else {
        return false;
    };
    c.starts_with(&d)
}

/// Every running node whose configuration lies in `dir`.
pub fn nodes_of(dir: &Path) -> Vec<NodeProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let config = node_config_of(&cmdline)?;
            belongs_to(&config, dir).then_some(NodeProcess { pid, config })
        })
        .collect()
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: &OwnedFd, signal: i32) -> bool {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

/// Sends `signal` to the node `p` if the process holding its PID is still that node,
/// then waits up to `wait` for it to exit. Returns whether it was signalled.
pub fn stop(p: &NodeProcess, signal: i32, wait: Duration) -> Result<bool> {
    let Some(fd) = pidfd_open(p.pid) else {
        return Ok(false); // already gone
    };
    // The pidfd pins the process: if the command line still names this node now, the
    // process the pidfd refers to is this node (a reused PID would be another pidfd).
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
    if node_config_of(&cmdline).as_deref() != Some(p.config.as_path()) || !pidfd_signal(&fd, 0) {
        return Ok(false);
    }
    if !pidfd_signal(&fd, signal) {
        return Ok(false);
    }
    let end = Instant::now() + wait;
    while pidfd_signal(&fd, 0) {
        if Instant::now() > end {
            bail!(
                "node {} (pid {}) did not exit within {wait:?} of signal {signal}",
                p.config.display(),
                p.pid
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// Whether `port` is free on `ip` for both TCP and UDP (libp2p listens on both).
fn port_free(ip: std::net::IpAddr, port: u16) -> bool {
    std::net::TcpListener::bind((ip, port)).is_ok() && std::net::UdpSocket::bind((ip, port)).is_ok()
}

/// The first base port from `preferred` on (in steps of `count`) such that the `count`
/// ports from it are all free on loopback: a second federation on the same machine moves
/// along instead of failing or colliding.
pub fn free_range(preferred: u16, count: u16) -> Result<u16> {
    let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let step = count.max(1);
    let mut base = preferred;
    while let Some(end) = base.checked_add(count) {
        if end > 65_000 {
            break;
        }
        if (base..end).all(|p| port_free(ip, p)) {
            return Ok(base);
        }
        base = base.saturating_add(step);
    }
    bail!(
        "choosing ports: no {count} consecutive free ports from {preferred} up; pass another --base-port"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmdline(args: &[&str]) -> Vec<u8> {
        args.join("\0").into_bytes()
    }

    #[test]
    fn only_a_node_run_command_names_a_config() {
        assert_eq!(
            node_config_of(&cmdline(&[
                "/x/credfed-node",
                "run",
                "--config",
                "/f/310000/config.toml"
            ])),
            Some(PathBuf::from("/f/310000/config.toml"))
        );
        assert_eq!(
            node_config_of(&cmdline(&["/x/credfed-node", "init", "--config", "/f/c"])),
            None
        );
        assert_eq!(
            node_config_of(&cmdline(&["/bin/sleep", "run", "--config", "/f/c"])),
            None
        );
        assert_eq!(node_config_of(&cmdline(&["/x/credfed-node", "run"])), None);
    }

    #[test]
    fn a_busy_range_is_skipped() {
        // A free range can be taken by another process's ephemeral port between the
        // check and the bind: then try the next one (bounded).
        let mut from = 41_000;
        let (base, _held) = loop {
            let base = free_range(from, 4).unwrap();
            match std::net::TcpListener::bind(("127.0.0.1", base + 1)) {
                Ok(held) => break (base, held),
                Err(_) if from < 50_000 => from = base + 4,
                Err(e) => panic!("no range to hold a port in: {e}"),
            }
        };
        let next = free_range(base, 4).unwrap();
        assert!(next >= base + 4, "{base} → {next}");
    }

    /// A PID that is not (or no longer) our node is never signalled.
    #[test]
    fn a_process_that_is_not_the_node_is_left_alone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = NodeProcess {
            pid: child.id(),
            config: PathBuf::from("/nonexistent/config.toml"),
        };
        assert!(!stop(&p, libc::SIGTERM, Duration::from_secs(1)).unwrap());
        assert!(child.try_wait().unwrap().is_none(), "sleep must still run");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
