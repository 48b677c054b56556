//! What our BPF programs' loaders share (built only where build.rs compiled them, cfg
//! `rtmfp_bpf`): opening and loading an object build.rs embedded, finding its maps, and
//! summing a per-CPU counter.

use libbpf_rs::{ErrorKind, MapCore, MapFlags, Object, ObjectBuilder};

/// An ELF object build.rs compiled, 8-byte aligned because libelf reads its headers in
/// place: `static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(...));`.
#[repr(C, align(8))]
pub struct Aligned<B: ?Sized>(pub B);

/// Why an embedded object did not load.
#[derive(Debug)]
pub enum LoadError {
    /// libbpf could not open it (a build problem).
    Open(String),
    /// The kernel refused it; `permission_denied` when for want of privilege.
    Load {
        permission_denied: bool,
        why: String,
    },
}

/// Opens `elf` under `name` and loads it into the kernel.
pub fn load(elf: &Aligned<[u8]>, name: &str) -> Result<Object, LoadError> {
    let open = ObjectBuilder::default()
        .name(name)
        .map_err(|e| LoadError::Open(format!("{e:#}")))?
        .open_memory(&elf.0)
        .map_err(|e| LoadError::Open(format!("{e:#}")))?;
    open.load().map_err(|e| LoadError::Load {
        permission_denied: e.kind() == ErrorKind::PermissionDenied,
        why: format!("{e:#}"),
    })
}

/// The map called `name`, if the object has one.
pub fn find_map<'o>(object: &'o Object, name: &str) -> Option<libbpf_rs::Map<'o>> {
    object.maps().find(|m| m.name() == name)
}

/// Slot `key` of the per-CPU array `map`, summed over every CPU; 0 when it cannot be read
/// (a counter read must not take the server down).
pub fn per_cpu_sum(object: &Object, map: &str, key: u32) -> u64 {
    let Some(map) = find_map(object, map) else {
        return 0;
    };
    match map.lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(per_cpu)) => per_cpu
            .iter()
            .filter_map(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_ne_bytes)
            .sum(),
        _ => 0,
    }
}
