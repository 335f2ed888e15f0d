//! Where a phase's CPU went, from Linux's `/proc`: the machine's busy, idle,
//! I/O-wait and stolen time (taken by the hypervisor for other machines),
//! and the CPU of carelog, nats-server, PostgreSQL, this bench and the
//! kernel's threads, in cores. Everything of a benchmark runs
//! on the same machine, so this says what the phase was bound by. Where
//! `/proc` cannot be read (not Linux), a phase has no CPU figures.

use std::collections::HashMap;
use std::fmt;

/// Clock ticks per second of `/proc/stat` and `/proc/<pid>/stat` (`USER_HZ`,
/// 100 on every Linux architecture carelog builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process groups reported, in this order; anything else is "other".
const GROUPS: [&str; 6] = [
    "carelog",
    "nats-server",
    "postgres",
    "this bench",
    "kernel",
    "other",
];

/// The machine's and every process's CPU ticks at one moment.
pub struct Sample {
    /// All ticks of the machine, and of those the idle, I/O-wait and
    /// stolen ones.
    machine: [u64; 4],
    /// Per pid: its group and its ticks (user and system, all threads).
    processes: HashMap<u32, (usize, u64)>,
    at: std::time::Instant,
}

/// The CPU used between two samples (or several such spans, merged).
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    machine: [u64; 4],
    groups: [u64; GROUPS.len()],
    seconds: f64,
}

impl Sample {
    /// Now, or `None` where `/proc` is not there.
    pub fn take() -> Option<Sample> {
        let machine = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let me = std::process::id();
        let mut processes = HashMap::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            // A process may end while we look: it is simply left out.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((comm, parent, ticks)) = process_ticks(&stat) {
                processes.insert(pid, (group(pid == me, comm, parent), ticks));
            }
        }
        Some(Sample {
            machine,
            processes,
            at: std::time::Instant::now(),
        })
    }

    /// What was used from this sample until now. Processes that started in
    /// between are not counted.
    pub fn until_now(&self) -> Option<Usage> {
        let now = Sample::take()?;
        let mut groups = [0; GROUPS.len()];
        for (pid, (group, ticks)) in &now.processes {
            if let Some((_, before)) = self.processes.get(pid) {
                groups[*group] += ticks.saturating_sub(*before);
            }
        }
        Some(Usage {
            machine: std::array::from_fn(|i| now.machine[i].saturating_sub(self.machine[i])),
            groups,
            seconds: now.at.duration_since(self.at).as_secs_f64(),
        })
    }
}

impl Usage {
    /// Two spans as one.
    pub fn merge(&self, other: &Usage) -> Usage {
        Usage {
            machine: std::array::from_fn(|i| self.machine[i] + other.machine[i]),
            groups: std::array::from_fn(|i| self.groups[i] + other.groups[i]),
            seconds: self.seconds + other.seconds,
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [total, idle, iowait, steal] = self.machine.map(|t| t as f64);
        let share = |t: f64| if total > 0.0 { 100.0 * t / total } else { 0.0 };
        write!(
            f,
            "cpu: busy {:.0} %, idle {:.0} %, I/O wait {:.0} %, stolen {:.0} %; cores:",
            share(total - idle - iowait - steal),
            share(idle),
            share(iowait),
            share(steal)
        )?;
        for (name, ticks) in GROUPS.iter().zip(self.groups) {
            let cores = ticks as f64 / TICKS_PER_SECOND / self.seconds.max(f64::EPSILON);
            write!(f, " {name} {cores:.2}")?;
        }
        Ok(())
    }
}

/// The first line of `/proc/stat`: (all, idle, I/O wait, steal) ticks.
fn machine_ticks(stat: &str) -> Option<[u64; 4]> {
    let mut fields = stat.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let all = ticks.iter().take(8).sum();
    Some([all, *ticks.get(3)?, *ticks.get(4)?, *ticks.get(7)?])
}

/// `/proc/<pid>/stat`: (command name, parent pid, user + system ticks). The
/// name is in parentheses and may hold spaces and parentheses itself.
fn process_ticks(stat: &str) -> Option<(&str, u32, u64)> {
    let (head, rest) = stat.rsplit_once(") ")?;
    let (_, comm) = head.split_once(" (")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name: state, ppid, ... utime (12th), stime (13th).
    let parent = fields.get(1)?.parse().ok()?;
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, parent, user + system))
}

fn group(is_me: bool, comm: &str, parent: u32) -> usize {
    let name = if is_me {
        "this bench"
    } else if comm == "carelog" || comm == "nats-server" || comm == "postgres" {
        comm
    } else if parent == 2 || comm == "kthreadd" {
        "kernel"
    } else {
        "other"
    };
    GROUPS
        .iter()
        .position(|g| *g == name)
        .unwrap_or(GROUPS.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_line_gives_all_idle_io_wait_and_stolen_ticks() {
        let stat = "cpu  100 5 50 780 40 3 2 20 0 0\ncpu0 50 2 25 390 20 1 1 10 0 0\n";
        assert_eq!(machine_ticks(stat), Some([1000, 780, 40, 20]));
        assert_eq!(machine_ticks("intr 1 2 3\n"), None);
    }

    #[test]
    fn a_process_name_with_spaces_and_parentheses_is_read_whole() {
        let stat = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 70 0 0 20 0 3 0 1000 0 0";
        assert_eq!(process_ticks(stat), Some(("tokio (worker) 1", 1, 320)));
    }

    #[test]
    fn processes_fall_into_their_groups() {
        let of = |is_me, comm, parent| GROUPS[group(is_me, comm, parent)];
        assert_eq!(of(false, "carelog", 1), "carelog");
        assert_eq!(of(true, "carelog", 1), "this bench");
        assert_eq!(of(false, "postgres", 900), "postgres");
        assert_eq!(of(false, "kworker/u8:0", 2), "kernel");
        assert_eq!(of(false, "bash", 1), "other");
    }

    #[test]
    fn a_busy_span_of_this_process_is_counted_as_the_bench() {
        let before = Sample::take().expect("/proc on Linux");
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let usage = before.until_now().expect("/proc on Linux");
        assert!(usage.groups[group(true, "test", 1)] > 0, "{usage:?}");
        assert!(usage.machine[0] > 0, "{usage:?}");
    }

    #[test]
    fn usage_is_shown_as_shares_of_the_machine_and_cores_per_group() {
        let usage = Usage {
            machine: [400, 100, 20, 8],
            groups: [90, 40, 20, 10, 4, 0],
            seconds: 2.0,
        };
        assert_eq!(
            usage.to_string(),
            "cpu: busy 68 %, idle 25 %, I/O wait 5 %, stolen 2 %; cores: carelog 0.45 \
             nats-server 0.20 \
             postgres 0.10 this bench 0.05 kernel 0.02 other 0.00"
        );
        let twice = usage.merge(&usage);
        assert_eq!(twice.to_string(), usage.to_string());
    }
}
