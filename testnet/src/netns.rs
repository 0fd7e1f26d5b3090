//! Real network faults: every node in its own network namespace, joined by a veth pair to
//! a bridge in a hub namespace; nftables rules in each node's namespace drop packets from
//! chosen peers (a partition, both ways or one way) or a random share of them (loss).
//!
//! Layout of lab `k` (1 ≤ k ≤ [`MAX_LABS`]):
//!
//! ```text
//!  root namespace            cf{k}hub                      cf{k}n{i}
//!  cfh{k} 10.213.k.254 ──── host ─┐
//!                                 br0 ── v{i} ──────────── eth0 10.213.k.(i+1)
//! ```
//!
//! The drill (in the root namespace) reaches every node's API through `cfh{k}`; fault
//! rules never match the host address, so the drill keeps observing across a partition.
//! Deleting the namespaces removes everything, veth pairs included.
//!
//! Needs root, iproute2 and nftables. Only the lab's own namespaces and the one `cfh{k}`
//! interface in the root namespace are touched.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Labs that can exist at once on one machine (the third octet of the subnet).
pub const MAX_LABS: u8 = 250;

/// Nodes per lab: addresses .1 to .253 of the /24, .254 is the host.
pub const MAX_NODES: usize = 253;

/// First two octets of every lab's subnet. 10.213.0.0/16 is private and unlikely to be a
/// real network on a drill machine; a clash is reported by `ip` when the lab is made.
const SUBNET: [u8; 2] = [10, 213];

/// A lab this old with no process in it was abandoned (its drill was killed) and may be
/// reclaimed. Drills that are building a lab are seconds old.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Last octet of the host's address in each lab.
const HOST_OCTET: u8 = 254;

/// What a node's firewall does to packets arriving from other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkRules {
    /// Drop everything from these addresses.
    pub drop_from: BTreeSet<Ipv4Addr>,
    /// Drop this percentage (0..=100) of the rest of the packets from other nodes.
    pub loss_percent: u8,
}

/// Why this machine cannot run labs, or `None` if it can.
pub fn unavailable_reason() -> Option<String> {
    if !is_root() {
        return Some("not running as root (network namespaces need CAP_NET_ADMIN)".into());
    }
    for (program, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let ok = Command::new(program)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!(
                "`{program}` not found (install the Debian package {package})"
            ));
        }
    }
    None
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The nftables script that replaces a node's `credfed` table with `rules`. The
/// `table`/`delete table` prelude makes the replacement one atomic transaction that also
/// works when the table does not exist yet.
pub fn render_rules(rules: &LinkRules, subnet_prefix: &str, host: Ipv4Addr) -> String {
    let mut s = String::from("table inet credfed\ndelete table inet credfed\n");
    if rules.drop_from.is_empty() && rules.loss_percent == 0 {
        return s;
    }
    s.push_str("table inet credfed {\n  chain input {\n    type filter hook input priority 0; policy accept;\n");
    if !rules.drop_from.is_empty() {
        let list: Vec<String> = rules.drop_from.iter().map(|a| a.to_string()).collect();
        s.push_str(&format!("    ip saddr {{ {} }} drop\n", list.join(", ")));
    }
    if rules.loss_percent > 0 {
        s.push_str(&format!(
            "    ip saddr {subnet_prefix} ip saddr != {host} numgen random mod 100 < {} drop\n",
            rules.loss_percent.min(100)
        ));
    }
    s.push_str("  }\n}\n");
    s
}

/// A lab of network namespaces.
#[derive(Debug, Clone)]
pub struct NetLab {
    /// Lab number: the third octet of its subnet.
    pub slot: u8,
    /// Number of node namespaces.
    pub nodes: usize,
}

impl NetLab {
    /// Makes a lab of `nodes` namespaces in the first free slot.
    pub fn create(nodes: usize) -> Result<NetLab> {
        if nodes == 0 || nodes > MAX_NODES {
            bail!("a lab holds 1 to {MAX_NODES} nodes, not {nodes}");
        }
        for slot in 1..=MAX_LABS {
            let lab = NetLab { slot, nodes };
            // `ip netns add` fails if the name exists: that is the slot lock. A host
            // interface still present (its lab being torn down) also means busy.
            if std::path::Path::new(&format!("/sys/class/net/{}", lab.host_if())).exists()
                && !lab.reclaim_if_abandoned()
            {
                continue;
            }
            if run("ip", &["netns", "add", &lab.hub()], None).is_err() {
                continue;
            }
            return match lab.build() {
                Ok(()) => Ok(lab),
                Err(e) => {
                    lab.destroy();
                    Err(e.context(format!("building network lab {slot}")))
                }
            };
        }
        bail!(
            "all {MAX_LABS} network lab slots are taken; remove stale ones with `ip netns list` / `ip netns del`"
        )
    }

    fn build(&self) -> Result<()> {
        let hub = self.hub();
        for i in 0..self.nodes {
            run("ip", &["netns", "add", &self.node_ns(i)], None)?;
        }
        let mut hub_script = String::from("link add br0 type bridge\nlink set br0 up\n");
        for i in 0..self.nodes {
            hub_script.push_str(&format!(
                "link add v{i} type veth peer name eth0 netns {}\nlink set v{i} master br0 up\n",
                self.node_ns(i)
            ));
        }
        run("ip", &["-n", &hub, "-batch", "-"], Some(&hub_script))?;
        run(
            "ip",
            &[
                "link",
                "add",
                &self.host_if(),
                "type",
                "veth",
                "peer",
                "name",
                "host",
                "netns",
                &hub,
            ],
            None,
        )?;
        run(
            "ip",
            &["-n", &hub, "link", "set", "host", "master", "br0", "up"],
            None,
        )?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", self.host_ip()),
                "dev",
                &self.host_if(),
            ],
            None,
        )?;
        run("ip", &["link", "set", &self.host_if(), "up"], None)?;
        for i in 0..self.nodes {
            let script = format!(
                "addr add {}/24 dev eth0\nlink set eth0 up\nlink set lo up\n",
                self.node_ip(i)
            );
            run(
                "ip",
                &["-n", &self.node_ns(i), "-batch", "-"],
                Some(&script),
            )?;
        }
        Ok(())
    }

    /// A lab left behind by a drill that was killed before it could clean up: older than
    /// [`ABANDONED_AFTER`] and no process in any of its namespaces. Removes it and says
    /// whether it did. (A lab being built right now is young; a running one has nodes.)
    fn reclaim_if_abandoned(&self) -> bool {
        let hub = format!("/run/netns/{}", self.hub());
        let old_enough = std::fs::metadata(&hub)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ABANDONED_AFTER);
        if !old_enough {
            return false;
        }
        let mut nodes = 0;
        while std::path::Path::new(&format!("/run/netns/{}", self.node_ns(nodes))).exists() {
            nodes += 1;
        }
        let empty = (0..nodes).all(|i| {
            Command::new("ip")
                .args(["netns", "pids", &self.node_ns(i)])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
        });
        if !empty {
            return false;
        }
        NetLab {
            slot: self.slot,
            nodes,
        }
        .destroy();
        // The veth pair goes with the namespaces, asynchronously.
        for _ in 0..50 {
            if !std::path::Path::new(&format!("/sys/class/net/{}", self.host_if())).exists() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// Removes every namespace of the lab (and with them the veth pairs). Best effort:
    /// called on error paths and from `Drop`-like clean-ups.
    pub fn destroy(&self) {
        for i in 0..self.nodes {
            let _ = run("ip", &["netns", "del", &self.node_ns(i)], None);
        }
        let _ = run("ip", &["netns", "del", &self.hub()], None);
    }

    /// Name of the hub namespace (holds the bridge; also the slot's lock).
    pub fn hub(&self) -> String {
        format!("cf{}hub", self.slot)
    }

    /// Name of node `i`'s namespace.
    pub fn node_ns(&self, i: usize) -> String {
        format!("cf{}n{i}", self.slot)
    }

    /// The host-side interface in the root namespace.
    pub fn host_if(&self) -> String {
        format!("cfh{}", self.slot)
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        assert!(i < MAX_NODES, "node index {i} beyond the /24");
        Ipv4Addr::new(SUBNET[0], SUBNET[1], self.slot, i as u8 + 1)
    }

    /// The drill's address on the lab bridge.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], self.slot, HOST_OCTET)
    }

    /// The lab's subnet in CIDR notation.
    pub fn subnet(&self) -> String {
        format!("{}.{}.{}.0/24", SUBNET[0], SUBNET[1], self.slot)
    }

    /// A command that runs `program` inside node `i`'s namespace. `ip netns exec` execs
    /// the program (no fork), so the child's pid is the program's and signals reach it.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node_ns(i)]).arg(program);
        c
    }

    /// Replaces node `i`'s firewall rules.
    pub fn apply(&self, i: usize, rules: &LinkRules) -> Result<()> {
        let script = render_rules(rules, &self.subnet(), self.host_ip());
        run(
            "ip",
            &["netns", "exec", &self.node_ns(i), "nft", "-f", "-"],
            Some(&script),
        )
        .with_context(|| format!("applying firewall rules in {}", self.node_ns(i)))
    }
}

/// Runs a command, feeding `stdin`; fails with its stderr.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Ipv4Addr {
        Ipv4Addr::new(10, 213, 7, 254)
    }

    #[test]
    fn healed_rules_only_remove_the_table() {
        let s = render_rules(&LinkRules::default(), "10.213.7.0/24", host());
        assert_eq!(s, "table inet credfed\ndelete table inet credfed\n");
    }

    #[test]
    fn partition_and_loss_rules_spare_the_host() {
        let rules = LinkRules {
            drop_from: [Ipv4Addr::new(10, 213, 7, 3), Ipv4Addr::new(10, 213, 7, 1)]
                .into_iter()
                .collect(),
            loss_percent: 30,
        };
        let s = render_rules(&rules, "10.213.7.0/24", host());
        assert!(
            s.contains("ip saddr { 10.213.7.1, 10.213.7.3 } drop"),
            "{s}"
        );
        assert!(
            s.contains(
                "ip saddr 10.213.7.0/24 ip saddr != 10.213.7.254 numgen random mod 100 < 30 drop"
            ),
            "{s}"
        );
        assert!(
            !s.contains("10.213.7.254 }"),
            "the host is never dropped: {s}"
        );
    }

    #[test]
    fn loss_is_capped_at_one_hundred_percent() {
        let rules = LinkRules {
            drop_from: BTreeSet::new(),
            loss_percent: 250,
        };
        let s = render_rules(&rules, "10.213.7.0/24", host());
        assert!(s.contains("< 100 drop") && !s.contains("saddr {"), "{s}");
    }

    #[test]
    fn addresses_and_names_fit_their_limits() {
        let lab = NetLab {
            slot: MAX_LABS,
            nodes: 31,
        };
        // Linux interface names are at most 15 bytes.
        assert!(lab.host_if().len() <= 15);
        assert_eq!(lab.node_ip(30), Ipv4Addr::new(10, 213, 250, 31));
        assert_eq!(lab.host_ip(), Ipv4Addr::new(10, 213, 250, 254));
        assert_eq!(lab.node_ns(3), "cf250n3");
    }
}
