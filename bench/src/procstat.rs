//! CPU time and resident memory of processes, read from `/proc`.

use std::time::Duration;

/// CPU time (user + system) consumed so far by process `pid` (`None`: this
/// process), or `None` when the process is gone.
pub(crate) fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis are space separated. utime and stime are fields
    // 14 and 15, i.e. the 12th and 13th after the state (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// Resident set size of process `pid` in bytes, or `None` when it is gone.
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether process `pid` has exited (gone, or a zombie not yet reaped).
pub(crate) fn exited(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .is_none_or(|state| state == "Z" || state == "X")
}

/// CPU time summed over `pids`; processes that are gone count nothing.
pub(crate) fn cpu_time_of(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|pid| cpu_time(Some(*pid))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(cpu_time(None).is_some());
        assert!(resident_bytes(std::process::id()).unwrap() > 0);
        assert!(cpu_time(Some(std::process::id())).is_some());
    }

    #[test]
    fn a_missing_process_reads_none() {
        assert_eq!(resident_bytes(u32::MAX), None);
        assert_eq!(cpu_time(Some(u32::MAX)), None);
        assert!(exited(u32::MAX));
        assert!(!exited(std::process::id()));
    }
}
