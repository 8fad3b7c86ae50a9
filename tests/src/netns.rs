//! Three virtual hosts in Linux network namespaces, for a cluster on a
//! real (virtual) network: non-loopback addresses, a bridge, `tc netem`
//! delay and loss where the kernel has it, and partitions.
//!
//! [`VirtualHosts::create`] makes, with `ip` (iproute2), one namespace per
//! host and one more holding a bridge; each host has an `eth0` whose veth
//! peer is a port of the bridge, with an address in a private range
//! (`10.213.<n>.0/24`). Nothing is created in the machine's own namespace
//! and none of its interfaces or addresses are touched: every link is
//! created inside a namespace made here, and dropping the [`VirtualHosts`]
//! deletes the namespaces, which takes their links with them.
//!
//! The test's own client side runs in the bridge namespace, which has an
//! address on the bridge: [`VirtualHosts::run_in_bridge`] runs a closure
//! on a thread that entered that namespace (a network namespace is per
//! thread), so its sockets reach the hosts while the rest of the process
//! stays where it was.
//!
//! Faults: [`shape`](VirtualHosts::shape) puts `netem` delay and loss on
//! every host's `eth0` (where the kernel has `sch_netem`);
//! [`partition`](VirtualHosts::partition) cuts a host off by taking its
//! bridge port down (its own `eth0` stays up with its address and routes,
//! and what it sends is dropped silently, as on a cut cable),
//! [`heal`](VirtualHosts::heal) undoes it.
//!
//! Creating namespaces needs root (`CAP_SYS_ADMIN`, `CAP_NET_ADMIN`);
//! where that is not permitted, [`VirtualHosts::create`] says so and the
//! suite skips.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;

/// The port every host's member listens on.
pub const PORT: u16 = 7000;

/// Why the virtual hosts could not be made (the suite skips).
#[derive(Debug)]
pub struct Unavailable(pub String);

/// Runs `ip` with `args`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Three (or N) hosts in network namespaces on one bridge; see the
/// [module docs](self).
#[derive(Debug)]
pub struct VirtualHosts {
    bridge: String,
    hosts: Vec<String>,
    subnet: u8,
    netem: bool,
}

impl VirtualHosts {
    /// Creates `n` hosts and the bridge between them.
    pub fn create(n: usize) -> Result<VirtualHosts, Unavailable> {
        if !rustix::process::geteuid().is_root() {
            return Err(Unavailable("not running as root".into()));
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err(Unavailable(
                "the `ip` command (iproute2) is not installed".into(),
            ));
        }
        let pid = std::process::id();
        let bridge = format!("catga{pid}br");
        ip(&["netns", "add", &bridge])
            .map_err(|e| Unavailable(format!("network namespaces not permitted: {e}")))?;
        let mut hosts = VirtualHosts {
            bridge,
            hosts: Vec::new(),
            subnet: (pid % 200) as u8 + 20,
            netem: false,
        };
        hosts.build(n).map_err(Unavailable)?;
        Ok(hosts)
    }

    fn build(&mut self, n: usize) -> Result<(), String> {
        let br = self.bridge.clone();
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        let bridge_addr = format!("10.213.{}.254/24", self.subnet);
        ip(&["-n", &br, "addr", "add", &bridge_addr, "dev", "br0"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let host = format!("catga{}h{i}", std::process::id());
            ip(&["netns", "add", &host])?;
            self.hosts.push(host.clone());
            let port = format!("p{i}");
            // Both ends are created inside namespaces: the port in the
            // bridge's, its peer straight in the host's.
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &host,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", self.addr(i));
            ip(&["-n", &host, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `i`'s namespace name.
    pub fn namespace(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.subnet, i + 1)
    }

    /// Whether `netem` is in use (else only partitions, by link state).
    pub fn has_netem(&self) -> bool {
        self.netem
    }

    /// Puts `netem delay {delay_ms}ms loss {loss}%` on every host's
    /// `eth0`. Returns `Ok(false)` when the kernel has no `sch_netem`
    /// (nothing is changed then).
    pub fn shape(&mut self, delay_ms: u32, loss_percent: u32) -> Result<bool, String> {
        let delay = format!("{delay_ms}ms");
        let loss = format!("{loss_percent}%");
        for i in 0..self.hosts.len() {
            let host = self.hosts[i].clone();
            let added = run(
                "tc",
                &[
                    "-n", &host, "qdisc", "replace", "dev", "eth0", "root", "netem", "delay",
                    &delay, "loss", &loss,
                ],
            );
            match added {
                Ok(()) => self.netem = true,
                Err(e) if i == 0 && !self.netem => {
                    eprintln!("netem unavailable ({e}); partitions by link state only");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Cuts host `i` off from the others (and from the test's client).
    pub fn partition(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.bridge, "link", "set", &format!("p{i}"), "down"])
    }

    /// Connects host `i` again.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.bridge, "link", "set", &format!("p{i}"), "up"])
    }

    /// Runs `f` on a new (scoped) thread that entered the bridge's
    /// namespace, and returns its result (a panic in `f` is passed on).
    pub fn run_in_bridge<T, F>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = format!("/run/netns/{}", self.bridge);
        let file = File::open(&path)
            .or_else(|_| File::open(format!("/var/run/netns/{}", self.bridge)))
            .map_err(|e| format!("{path}: {e}"))?;
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map(|()| f())
                .map_err(|e| format!("cannot enter the bridge namespace: {e}"))
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for VirtualHosts {
    fn drop(&mut self) {
        for name in self.hosts.iter().chain(std::iter::once(&self.bridge)) {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("cleaning up: {e}");
            }
        }
    }
}
