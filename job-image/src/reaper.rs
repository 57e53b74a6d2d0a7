//! Orphans: the entrypoint makes itself a child subreaper, so processes a tool leaves behind
//! (even ones that left its process group with `setsid`) are re-parented to the entrypoint
//! instead of escaping to init. Zombies among them are reaped after every attempt (in a Job
//! container the entrypoint is PID 1 and nobody else would), and whatever still runs at the end
//! is killed.
//!
//! tokio reaps its own children by pid; to never reap one of those by mistake, every pid tokio
//! manages is tracked from spawn (under the same lock as the scan) until it has been waited for.

use std::io;
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

static TRACKED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn tracked() -> MutexGuard<'static, Vec<u32>> {
    // A panic while holding the lock leaves the list intact; keep using it.
    TRACKED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asks the kernel to re-parent our orphaned descendants to us (Linux only).
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Spawns and tracks in one step, so a scan never sees the new child untracked.
pub fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut list = tracked();
    let child = command.spawn()?;
    if let Some(pid) = child.id() {
        list.push(pid);
    }
    Ok(child)
}

/// Called once tokio has reaped `pid`.
pub fn untrack(pid: u32) {
    tracked().retain(|p| *p != pid);
}

/// Reaps zombie orphans. Returns how many.
pub fn reap_zombies() -> usize {
    let list = tracked();
    orphans(&list)
        .into_iter()
        .filter(|(pid, zombie)| *zombie && waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)).is_ok())
        .count()
}

/// Kills and reaps every orphan still around; for the end of the run, when no attempt is
/// running (a live orphan may otherwise still be doing work for a running tool). Returns the
/// pids killed.
pub fn kill_orphans() -> Vec<i32> {
    let list = tracked();
    let mut killed = Vec::new();
    // A killed orphan's own children are re-parented to us in turn; a few rounds catch them.
    for _ in 0..10 {
        let found = orphans(&list);
        if found.is_empty() {
            break;
        }
        for (pid, zombie) in found {
            let pid = Pid::from_raw(pid);
            if !zombie {
                let _ = kill(pid, Signal::SIGKILL);
                killed.push(pid.as_raw());
            }
            let _ = waitpid(pid, None);
        }
    }
    killed
}

/// Our children that tokio does not manage: `(pid, is_zombie)`.
fn orphans(tracked: &[u32]) -> Vec<(i32, bool)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if tracked.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(me) {
            found.push((pid as i32, state == "Z"));
        }
    }
    found
}
