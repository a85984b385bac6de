//! The /proc scan of a process tree: the guard finds the job's whole tree with it (also
//! what left the job's group with setsid), and leaderrun as PID 1 finds strays. Reads
//! /proc/PID/status with NSpid, so it works in a PID namespace whose /proc was not remounted.

use nix::unistd::Pid;

/// This process's pid as /proc numbers it. In a PID namespace whose /proc was not mounted
/// anew (`unshare --pid` without `--mount-proc`), getpid() says 1 while /proc uses the
/// outer numbers.
pub fn proc_pid() -> Pid {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok())
        .map(Pid::from_raw)
        .unwrap_or_else(nix::unistd::getpid)
}

/// A process as /proc shows it: its number there, its parent's, and its number in this
/// process's own PID namespace (the one signals and waitpid take).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcEntry {
    pub proc_pid: i32,
    pub proc_ppid: i32,
    pub pid: Pid,
    pub zombie: bool,
}

/// How deep this process's PID namespace sits below /proc's: the index of "our" number
/// in each process's NSpid list.
fn our_depth(buf: &mut [u8; 2048]) -> usize {
    read_status(proc_pid().as_raw(), buf)
        .map(|e| e.1.saturating_sub(1))
        .unwrap_or(0)
}

/// (ppid, NSpid length, state, NSpid entry at `depth`) from /proc/PID/status, without
/// allocating: the file is read into `buf`.
fn read_status(pid: i32, buf: &mut [u8; 2048]) -> Option<(i32, usize, u8, [i32; 8])> {
    use std::io::Read;
    let mut path = [0u8; 32];
    let len = {
        use std::io::Write;
        let mut w = &mut path[..];
        write!(w, "/proc/{pid}/status").ok()?;
        32 - w.len()
    };
    let path = std::str::from_utf8(&path[..len]).ok()?;
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let (mut ppid, mut state, mut ns, mut depth) = (None, b'?', [0i32; 8], 0usize);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("PPid:") {
            ppid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("State:") {
            state = v.trim().bytes().next().unwrap_or(b'?');
        } else if let Some(v) = line.strip_prefix("NSpid:") {
            for (i, n) in v.split_whitespace().take(8).enumerate() {
                ns[i] = n.parse().unwrap_or(0);
                depth = i + 1;
            }
        }
    }
    Some((ppid?, depth.max(1), state, ns))
}

/// Every process whose chain of parents reaches `root` (a /proc number; not `root`
/// itself), from /proc/*/status. `out` gets their pids in this process's namespace
/// (cleared first); `scratch` holds what was read.
pub fn descendants(root: Pid, out: &mut Vec<Pid>, scratch: &mut Vec<ProcEntry>) {
    out.clear();
    scan(scratch);
    // Follow each process up its chain of parents; the depth bound guards against a
    // chain that changed while it was read.
    for e in scratch.iter() {
        let mut at = e.proc_pid;
        for _ in 0..64 {
            let Some(parent) = scratch
                .iter()
                .find(|p| p.proc_pid == at)
                .map(|p| p.proc_ppid)
            else {
                break;
            };
            if parent == root.as_raw() {
                out.push(e.pid);
                break;
            }
            if parent <= 1 {
                break;
            }
            at = parent;
        }
    }
}

/// Reads every process of /proc into `scratch` (cleared first); processes outside this
/// process's PID namespace are left out (they cannot be ours).
pub fn scan(scratch: &mut Vec<ProcEntry>) {
    scratch.clear();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut buf = [0u8; 2048];
    let depth = our_depth(&mut buf);
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some((ppid, levels, state, ns)) = read_status(pid, &mut buf) {
            if levels > depth {
                scratch.push(ProcEntry {
                    proc_pid: pid,
                    proc_ppid: ppid,
                    pid: Pid::from_raw(ns[depth]),
                    zombie: state == b'Z',
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_of_this_process_include_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        descendants(nix::unistd::getpid(), &mut out, &mut scratch);
        let _ = child.kill();
        let _ = child.wait();
        assert!(out.contains(&Pid::from_raw(child.id() as i32)));
    }
}
