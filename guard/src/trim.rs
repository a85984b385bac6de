//! Giving back the pages of code and constants that only starting up used. Starting touches
//! most of the binary (arguments, the kubeconfig, TLS, the first requests, and the loader's
//! relocation tables); leading touches a part of it (the renew loop; the guard's wait). Once
//! the job has started, leaderrun and its guard each drop their mapping of the code and of the
//! read-only data, and the pages they use from then on come back from the page cache at their
//! first use, a minor fault each. The file's pages stay in the page cache, shared with every
//! other copy of the binary on the host.

use std::ffi::c_void;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

/// Drops this process's mapping of the binary's code and of its read-only data (constants,
/// symbol and relocation tables, unwinding tables); true when both went. Each is found as
/// the mapping that holds something of its kind: this function, a constant.
pub fn code_pages() -> bool {
    let here = code_pages as *const () as usize;
    let constant = b"leaderrun".as_ptr() as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    [(here, "r-xp"), (constant, "r--p")]
        .iter()
        .all(|&(addr, perms)| {
            maps.lines()
                .find_map(|l| file_range(l, addr, perms))
                .is_some_and(|(start, end)| drop_range(start, end))
        })
}

fn drop_range(start: usize, end: usize) -> bool {
    let Some(addr) = NonNull::new(start as *mut c_void) else {
        return false;
    };
    // SAFETY: the range is a private read-only mapping of a file that holds code or
    // constants, never written (a running binary cannot be written to: ETXTBSY; relocated
    // data sits in a mapping of its own, which holds no constant), so what MADV_DONTNEED
    // drops reads back the same from the file.
    unsafe { madvise(addr, end - start, MmapAdvise::MADV_DONTNEED) }.is_ok()
}

/// The range of a line of /proc/self/maps if it is a private mapping of a file with these
/// permissions that holds `addr`.
fn file_range(line: &str, addr: usize, perms: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let mode = fields.next()?;
    // offset, device, inode, then the path: a file, not an anonymous mapping.
    let path = fields.nth(3)?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (mode == perms && path.starts_with('/') && start <= addr && addr < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident KiB of the code mapping that holds `code_pages`.
    fn resident_code() -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let here = code_pages as *const () as usize;
        let mut inside = false;
        for line in smaps.lines() {
            if line.contains(" r-xp ") || line.contains(" r--p ") || line.contains(" rw-p ") {
                inside = file_range(line, here, "r-xp").is_some();
            } else if inside {
                if let Some(kb) = line.strip_prefix("Rss:") {
                    return kb.trim().trim_end_matches(" kB").trim().parse().unwrap();
                }
            }
        }
        panic!("no code mapping holds code_pages");
    }

    #[test]
    fn only_a_file_mapping_with_the_permissions_that_holds_the_address_is_taken() {
        let line = "55f0-5600 r-xp 00241000 fd:01 4321   /usr/bin/leaderrun";
        assert_eq!(file_range(line, 0x55f8, "r-xp"), Some((0x55f0, 0x5600)));
        assert_eq!(file_range(line, 0x5600, "r-xp"), None);
        assert_eq!(file_range(line, 0x55f8, "r--p"), None);
        let data = "55f0-5600 rw-p 00241000 fd:01 4321   /usr/bin/leaderrun";
        assert_eq!(file_range(data, 0x55f8, "r-xp"), None);
        let anonymous = "55f0-5600 r-xp 00000000 00:00 0";
        assert_eq!(file_range(anonymous, 0x55f8, "r-xp"), None);
        let vdso = "55f0-5600 r-xp 00000000 00:00 0   [vdso]";
        assert_eq!(file_range(vdso, 0x55f8, "r-xp"), None);
    }

    /// Set in the process of its own that the test below runs its check in.
    const ALONE: &str = "LEADERRUN_TRIM_TEST_ALONE";

    #[test]
    fn the_code_segment_is_given_back_and_runs_on() {
        // In a process of its own, one test at a time: the other tests' threads, running
        // meanwhile in this one, fault code back in, and in a binary this small they once
        // brought every page back before it was counted (seen once, under load).
        if std::env::var_os(ALONE).is_none() {
            let name = "trim::tests::the_code_segment_is_given_back_and_runs_on";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([name, "--exact", "--test-threads=1", "--nocapture"])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("1 passed"),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let before = resident_code();
        assert!(code_pages());
        // What reading smaps and this test use comes back; the rest of the test binary's
        // code (the harness, std's formatting) stays out for now.
        let after = resident_code();
        assert!(
            after < before,
            "{after} KiB resident after, {before} KiB before"
        );
    }
}
