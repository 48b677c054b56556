//! Network namespaces for the tests that need them (root and iproute2): a uniquely named
//! namespace the test creates and that is deleted when dropped (also when the test
//! panics), commands run inside it, veth pairs between namespaces, nftables rules.

#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `program args` (in the namespace this process runs in) and returns its output;
/// panics naming the command and with its stderr if it cannot start or fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    checked(command, &format!("{program} {}", args.join(" ")))
}

fn checked(mut command: Command, what: &str) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running `{what}`: {e}"));
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stdout = match stdout.trim() {
            "" => String::new(),
            text => format!("\nstdout: {text}"),
        };
        panic!(
            "`{what}` failed ({}): {}{stdout}\n(the netns tests need root, iproute2 and \
             network namespaces)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
        );
    }
    out
}

/// A network namespace named `rtmfp-{tag}-{pid}-{n}`, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace (with only `lo`, down); `tag` says which test it is for.
    pub fn new(tag: &str) -> Netns {
        static CREATED: AtomicUsize = AtomicUsize::new(0);
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let name = format!("rtmfp-{tag}-{}-{n}", std::process::id());
        // One left by an earlier process with this id that was killed before its drop.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        Netns { name }
    }

    /// The name, for `ip netns exec` and `Option<&str>` netns arguments.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to run inside the namespace (`ip netns exec` mounts its own /sys there).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args` inside the namespace and returns its output, success or not.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name))
    }

    /// Runs `program args` inside the namespace; panics naming the command and with its
    /// stderr if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut command = self.command(program);
        command.args(args);
        checked(
            command,
            &format!("ip netns exec {} {program} {}", self.name, args.join(" ")),
        )
    }

    /// `ip -n NAME args`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        ip_in(Some(self), args);
    }

    /// Brings `lo` up.
    pub fn lo_up(&self) {
        self.ip(&["link", "set", "lo", "up"]);
    }

    /// Loads nftables `rules` (as in an `nft -f` file: `add ...;` commands or `table`
    /// blocks) into the namespace.
    pub fn nft(&self, rules: &str) {
        let file = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&file, rules).unwrap();
        let out = self.exec("nft", &["-f", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "nft: {}{} (this test needs nftables)",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its interfaces, and so both ends of its veths.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `ip [-n NAME] args` in `ns`, or in the namespace this process runs in; must succeed.
fn ip_in(ns: Option<&Netns>, args: &[&str]) {
    let mut all = Vec::with_capacity(args.len() + 2);
    if let Some(ns) = ns {
        all.extend(["-n", ns.name()]);
    }
    all.extend_from_slice(args);
    run("ip", &all);
}

/// One end of a veth pair: where it lives, its name, and its address if any.
pub struct End<'a> {
    ns: Option<&'a Netns>,
    name: &'a str,
    addr: Option<&'a str>,
}

impl<'a> End<'a> {
    /// An end named `name` in `ns`.
    pub fn new(ns: &'a Netns, name: &'a str) -> End<'a> {
        End {
            ns: Some(ns),
            name,
            addr: None,
        }
    }

    /// An end named `name` in the namespace this process runs in (the root namespace);
    /// the name should hold the process id so that it cannot clash. It goes when the
    /// other end's namespace is dropped.
    pub fn root(name: &'a str) -> End<'a> {
        End {
            ns: None,
            name,
            addr: None,
        }
    }

    /// With this address and prefix length, e.g. "10.77.1.1/24".
    pub fn addr(self, cidr: &'a str) -> End<'a> {
        End {
            addr: Some(cidr),
            ..self
        }
    }

    fn same_namespace(&self, other: &End<'_>) -> bool {
        self.ns.map(Netns::name) == other.ns.map(Netns::name)
    }
}

/// Creates a veth pair between ends `a` and `b` (which may be in the same namespace),
/// gives each its address and sets both up.
pub fn veth(a: End<'_>, b: End<'_>) {
    let target = match b.ns {
        Some(ns) => ns.name().to_owned(),
        None => std::process::id().to_string(),
    };
    let mut add = vec![
        "link", "add", a.name, "type", "veth", "peer", "name", b.name,
    ];
    if !a.same_namespace(&b) {
        // The peer is made in its own namespace, so its name only has to be free there.
        add.extend(["netns", &target]);
    }
    ip_in(a.ns, &add);
    for end in [&a, &b] {
        if let Some(cidr) = end.addr {
            ip_in(end.ns, &["addr", "add", cidr, "dev", end.name]);
        }
        ip_in(end.ns, &["link", "set", end.name, "up"]);
    }
}
