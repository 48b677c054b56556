//! Compiles the BPF programs under bpf/ with clang into OUT_DIR (the reuseport steering
//! program, bpf/reuseport_steer.bpf.c, and the XDP guard, bpf/xdp_guard.bpf.c) and sets
//! `cfg(rtmfp_bpf)` so src/engine/steering.rs and src/engine/xdp_guard.rs embed them.
//!
//! Without clang (or off Linux) the crate still builds: the cfg stays unset and
//! `ReuseportSteering::attach` reports that the program was not built, so the engine falls
//! back to handing foreign packets between shards. With clang present, a program that
//! fails to compile fails the build: that is a bug, not a missing tool.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Each program's source and the object it compiles to.
const PROGRAMS: [(&str, &str); 2] = [
    ("bpf/reuseport_steer.bpf.c", "reuseport_steer.bpf.o"),
    ("bpf/xdp_guard.bpf.c", "xdp_guard.bpf.o"),
];

fn main() {
    println!("cargo:rustc-check-cfg=cfg(rtmfp_bpf)");
    for (source, _) in PROGRAMS {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");

    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    if Command::new(&clang).arg("--version").output().is_err() {
        println!(
            "cargo:warning=BPF programs not built: {clang} was not found; install clang \
             and libbpf-dev (scripts/setup) for session steering and the XDP guard"
        );
        return;
    }

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // <linux/bpf.h> pulls in <asm/types.h>, which Debian keeps under the multiarch include
    // dir; `-target bpf` does not search it on its own. bpf_helpers.h comes from libbpf-dev
    // in /usr/include/bpf, which clang searches by default.
    let multiarch = multiarch_include(&clang);
    for (source, object) in PROGRAMS {
        let mut cmd = Command::new(&clang);
        cmd.args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"]);
        if let Some(dir) = &multiarch {
            cmd.arg(format!("-I{}", dir.display()));
        }
        cmd.arg("-c").arg(source).arg("-o").arg(out.join(object));
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {clang} on {source}: {e}"));
        if !output.status.success() {
            panic!(
                "{clang} failed to compile {source} ({}):\n{}\n\
                 (is libbpf-dev installed? scripts/setup installs it)",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    println!("cargo:rustc-cfg=rtmfp_bpf");
}

/// `/usr/include/<multiarch>` for the host, when clang knows the name and the dir exists.
fn multiarch_include(clang: &str) -> Option<PathBuf> {
    let output = Command::new(clang).arg("-print-multiarch").output().ok()?;
    let name = String::from_utf8(output.stdout).ok()?;
    let name = name.trim();
    if !output.status.success() || name.is_empty() {
        return None;
    }
    let dir = PathBuf::from("/usr/include").join(name);
    dir.is_dir().then_some(dir)
}
