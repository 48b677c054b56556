//! `show`, `apply` and `revert`: reading the knobs, changing them after the state file
//! holds their old values, and putting those values back.

use std::path::Path;

use super::knob::{Decision, Knob, System, Target};
use super::report::{Outcome, Row};
use super::state::{Saved, State, StateError};

/// Each knob's value and what `apply` would do with it.
pub fn show(sys: &System, knobs: &[Knob]) -> Vec<Row> {
    knobs
        .iter()
        .map(|knob| {
            let (value, outcome) = match sys.read(&knob.target) {
                Ok(value) => {
                    let outcome = match knob.want.decide(&value) {
                        Decision::Change(v) => Outcome::WouldSet(v),
                        other => settled(other),
                    };
                    (value, outcome)
                }
                Err(r) => ("-".into(), Outcome::Unreadable(r)),
            };
            row(knob, value, outcome)
        })
        .collect()
}

/// Raises every knob below its recommendation. The values about to change go to the
/// state file at `path` first; a knob that cannot be written is reported, and dropped
/// from the state again, since it did not change.
pub fn apply(sys: &System, knobs: &[Knob], path: &Path) -> Result<Vec<Row>, StateError> {
    let here = sys.namespace();
    let mut state = match State::load(path)? {
        Some(state) => {
            state.check_namespace(path, here.as_deref())?;
            state
        }
        None => State::new(here),
    };

    let readings: Vec<(&Knob, Result<String, _>)> =
        knobs.iter().map(|k| (k, sys.read(&k.target))).collect();
    let mut added: Vec<Target> = Vec::new();
    for (knob, current) in &readings {
        if let Ok(current) = current {
            let changes = matches!(knob.want.decide(current), Decision::Change(_));
            if changes && state.find(&knob.target).is_none() {
                state.saved.push(Saved {
                    knob: knob.name.clone(),
                    target: knob.target.clone(),
                    previous: current.clone(),
                });
                added.push(knob.target.clone());
            }
        }
    }
    if !added.is_empty() {
        state.save(path)?;
    }

    let mut rows = Vec::new();
    let mut unwritten = Vec::new();
    for (knob, current) in readings {
        let current = match current {
            Ok(current) => current,
            Err(r) => {
                rows.push(row(knob, "-".into(), Outcome::Unreadable(r)));
                continue;
            }
        };
        let outcome = match knob.want.decide(&current) {
            Decision::Change(value) => match sys.write(&knob.target, &value) {
                Ok(()) => match sys.read(&knob.target) {
                    Ok(now) if settled(knob.want.decide(&now)).is_success() => Outcome::Set,
                    Ok(now) => Outcome::ReadsBack(now),
                    Err(r) => Outcome::Unreadable(r),
                },
                Err(r) => {
                    if added.contains(&knob.target) {
                        unwritten.push(knob.target.clone());
                    }
                    Outcome::NotWritten(r)
                }
            },
            other => settled(other),
        };
        rows.push(row(knob, current, outcome));
    }

    if !unwritten.is_empty() {
        state.saved.retain(|s| !unwritten.contains(&s.target));
        if state.saved.is_empty() {
            State::remove(path)?;
        } else {
            state.save(path)?;
        }
    }
    Ok(rows)
}

/// Writes back every value the state file at `path` holds, exactly as it was read.
/// The file goes when all are back; what could not be restored stays in it.
pub fn revert(sys: &System, path: &Path) -> Result<Vec<Row>, StateError> {
    let state = State::load(path)?.ok_or_else(|| StateError::Missing { path: path.into() })?;
    state.check_namespace(path, sys.namespace().as_deref())?;
    let mut rows = Vec::new();
    let mut left = Vec::new();
    for saved in &state.saved {
        let (value, outcome) = match sys.read(&saved.target) {
            Ok(now) if now == saved.previous => (now, Outcome::AlreadyThere),
            Ok(now) => {
                let outcome = match sys.write(&saved.target, &saved.previous) {
                    Ok(()) => match sys.read(&saved.target) {
                        Ok(back) if back == saved.previous => Outcome::Restored,
                        Ok(back) => Outcome::ReadsBack(back),
                        Err(r) => Outcome::Unreadable(r),
                    },
                    Err(r) => Outcome::NotWritten(r),
                };
                (now, outcome)
            }
            Err(super::refusal::Refusal::Missing) => ("-".into(), Outcome::Gone),
            Err(r) => ("-".into(), Outcome::Unreadable(r)),
        };
        if !outcome.is_success() {
            left.push(saved.clone());
        }
        rows.push(Row {
            knob: saved.knob.clone(),
            value,
            wanted: saved.previous.clone(),
            outcome,
            why: String::new(),
        });
    }
    if left.is_empty() {
        State::remove(path)?;
    } else {
        State {
            saved: left,
            ..state
        }
        .save(path)?;
    }
    Ok(rows)
}

/// The outcome of a decision that writes nothing.
fn settled(decision: Decision) -> Outcome {
    match decision {
        Decision::Fine => Outcome::Fine,
        Decision::Above => Outcome::Above,
        Decision::Info => Outcome::Info,
        Decision::Unparsed(why) => Outcome::Unparsed(why),
        Decision::Change(v) => Outcome::WouldSet(v),
    }
}

fn row(knob: &Knob, value: String, outcome: Outcome) -> Row {
    Row {
        knob: knob.name.clone(),
        value,
        wanted: knob.want.shown(),
        outcome,
        why: knob.why.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::tune::catalogue::{knobs, Options, Scope};
    use crate::tune::fake::FakeHost;
    use crate::tune::refusal::Refusal;

    const RMEM_MAX: &str = "/proc/sys/net/core/rmem_max";

    fn catalogue(host: &FakeHost) -> Vec<Knob> {
        let options = Options {
            iface: Some("eth0".into()),
            cores: vec![0, 1],
            scope: Scope::All,
        };
        knobs(&host.system(), &options).unwrap()
    }

    fn outcome<'a>(rows: &'a [Row], knob: &str) -> &'a Outcome {
        &rows
            .iter()
            .find(|r| r.knob == knob)
            .unwrap_or_else(|| panic!("no row {knob}"))
            .outcome
    }

    #[test]
    fn show_changes_nothing() {
        let host = FakeHost::typical();
        let before = host.snapshot();
        let rows = show(&host.system(), &catalogue(&host));
        assert_eq!(
            outcome(&rows, "net.core.rmem_max"),
            &Outcome::WouldSet("8388608".into())
        );
        assert_eq!(host.snapshot(), before);
        assert!(!host.state_path().exists());
    }

    #[test]
    fn apply_saves_every_old_value_before_changing_any() {
        let host = FakeHost::typical();
        let state_path = host.state_path();
        let checked = Rc::new(std::cell::Cell::new(0));
        let seen = checked.clone();
        let hook = Box::new(move |path: &str| {
            let state = State::load(&state_path)
                .unwrap()
                .expect("state file written before the first change");
            let saved = state
                .find(&Target::file(path))
                .unwrap_or_else(|| panic!("{path} written before its value was saved"));
            assert!(!saved.previous.is_empty());
            seen.set(seen.get() + 1);
        });
        let sys = host.system_with(Vec::new(), Some(hook));
        let rows = apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        assert!(checked.get() >= 10, "{} writes checked", checked.get());
        assert_eq!(outcome(&rows, "net.core.rmem_max"), &Outcome::Set);
        assert_eq!(host.get(RMEM_MAX), "8388608");
        assert_eq!(host.get("/proc/sys/vm/nr_hugepages"), "16");
        assert_eq!(host.get("/proc/irq/41/smp_affinity_list"), "1");
        assert_eq!(host.get("/sys/class/net/eth0/queues/tx-1/xps_cpus"), "2");
        assert_eq!(
            host.get("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor"),
            "performance"
        );
        assert_eq!(host.driver.borrow()["rx"], "4096");
        assert_eq!(host.driver.borrow()["adaptive-rx"], "on");

        let state = State::load(&host.state_path()).unwrap().unwrap();
        assert_eq!(
            state.find(&Target::file(RMEM_MAX)).unwrap().previous,
            "212992"
        );
        assert!(
            state
                .find(&Target::file("/proc/sys/net/ipv4/udp_mem"))
                .is_none(),
            "only what changed is saved"
        );
    }

    #[test]
    fn revert_restores_exactly_what_was_there() {
        let host = FakeHost::typical();
        let before = host.snapshot();
        let sys = host.system();
        apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        assert_ne!(host.snapshot(), before);

        let rows = revert(&sys, &host.state_path()).unwrap();
        assert!(
            rows.iter().all(|r| r.outcome == Outcome::Restored),
            "{rows:#?}"
        );
        assert_eq!(
            host.snapshot(),
            before,
            "every file as it was, byte for byte"
        );
        assert_eq!(host.driver.borrow()["rx"], "256");
        assert_eq!(host.driver.borrow()["adaptive-rx"], "off");
        assert!(
            !host.state_path().exists(),
            "state removed once all is back"
        );
        assert!(matches!(
            revert(&sys, &host.state_path()),
            Err(StateError::Missing { .. })
        ));
    }

    #[test]
    fn unwritable_knobs_are_reported_not_fatal() {
        let host = FakeHost::typical();
        std::fs::remove_file(host.path("/sys/class/net/eth0/gro_flush_timeout")).unwrap();
        let sys = host.system_with(
            vec![
                (RMEM_MAX, Refusal::NotPermitted),
                ("/proc/irq/40/smp_affinity_list", Refusal::Invalid),
            ],
            None,
        );
        let rows = apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        assert_eq!(
            outcome(&rows, "net.core.rmem_max"),
            &Outcome::NotWritten(Refusal::NotPermitted)
        );
        assert_eq!(
            outcome(&rows, "irq 40 (eth0-TxRx-0) affinity"),
            &Outcome::NotWritten(Refusal::Invalid)
        );
        assert_eq!(
            outcome(&rows, "eth0 gro_flush_timeout"),
            &Outcome::Unreadable(Refusal::Missing)
        );
        assert_eq!(
            outcome(&rows, "eth0 coalesce adaptive-tx"),
            &Outcome::Unreadable(Refusal::Unavailable("not supported by eth0".into()))
        );
        assert_eq!(outcome(&rows, "net.core.wmem_max"), &Outcome::Set);
        assert_eq!(host.get(RMEM_MAX), "212992");

        let state = State::load(&host.state_path()).unwrap().unwrap();
        assert!(
            state.find(&Target::file(RMEM_MAX)).is_none(),
            "a knob that did not change has nothing to revert"
        );
        let rows = revert(&sys, &host.state_path()).unwrap();
        assert!(rows.iter().all(|r| r.outcome.is_success()), "{rows:#?}");
        assert!(!host.state_path().exists());
    }

    #[test]
    fn a_higher_value_is_never_lowered() {
        let host = FakeHost::typical();
        host.set(RMEM_MAX, "67108864");
        host.set("/proc/sys/net/core/netdev_max_backlog", "250000");
        let rows = apply(&host.system(), &catalogue(&host), &host.state_path()).unwrap();
        assert_eq!(outcome(&rows, "net.core.rmem_max"), &Outcome::Above);
        assert_eq!(
            outcome(&rows, "net.core.netdev_max_backlog"),
            &Outcome::Above
        );
        assert_eq!(host.get(RMEM_MAX), "67108864");
        assert_eq!(host.get("/proc/sys/net/core/netdev_max_backlog"), "250000");
        let state = State::load(&host.state_path()).unwrap().unwrap();
        assert!(state.find(&Target::file(RMEM_MAX)).is_none());
    }

    #[test]
    fn a_second_apply_keeps_what_the_first_saved() {
        let host = FakeHost::typical();
        let before = host.snapshot();
        let sys = host.system();
        apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        // Someone lowers a knob by hand; a second apply raises it again.
        host.set(RMEM_MAX, "4096");
        let rows = apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        assert_eq!(outcome(&rows, "net.core.rmem_max"), &Outcome::Set);
        revert(&sys, &host.state_path()).unwrap();
        assert_eq!(host.get(RMEM_MAX), "212992", "the value before any apply");
        assert_eq!(host.snapshot(), before);
    }

    #[test]
    fn nothing_to_change_writes_no_state_file() {
        let host = FakeHost::typical();
        let sys = host.system();
        apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        std::fs::remove_file(host.state_path()).unwrap();
        let rows = apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        assert!(
            !rows
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Set | Outcome::NotWritten(_))),
            "{rows:#?}"
        );
        assert!(!host.state_path().exists());
    }

    #[test]
    fn revert_in_another_network_namespace_is_refused() {
        let host = FakeHost::typical();
        host.set_namespace("net:[4026532001]");
        let sys = host.system();
        apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        host.set_namespace("net:[4026531840]");
        let e = revert(&sys, &host.state_path()).unwrap_err();
        assert!(matches!(e, StateError::Namespace { .. }), "{e}");
        assert_eq!(host.get(RMEM_MAX), "8388608", "nothing touched");
        host.set_namespace("net:[4026532001]");
        revert(&sys, &host.state_path()).unwrap();
        assert_eq!(host.get(RMEM_MAX), "212992");
    }

    #[test]
    fn knobs_of_a_deleted_interface_are_gone_not_stuck() {
        let host = FakeHost::typical();
        let sys = host.system();
        apply(&sys, &catalogue(&host), &host.state_path()).unwrap();
        std::fs::remove_dir_all(host.path("/sys/class/net/eth0")).unwrap();
        let rows = revert(&sys, &host.state_path()).unwrap();
        assert_eq!(outcome(&rows, "eth0 tx-0 xps_cpus"), &Outcome::Gone);
        assert_eq!(outcome(&rows, "net.core.rmem_max"), &Outcome::Restored);
        assert!(!host.state_path().exists());
    }
}
