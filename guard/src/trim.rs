//! Giving back the pages of code that only starting up used. Starting touches most of the
//! binary's code (arguments, the kubeconfig, TLS, the first requests); leading touches a small
//! part of it (the renew loop; the guard's wait). Once the job has started, leaderrun and its
//! guard each drop their mapping of the whole code segment, and the pages they use from then
//! on come back from the page cache at their first use, a minor fault each. The file's pages
//! stay in the page cache, shared with every other copy of the binary on the host.

use std::ffi::c_void;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

/// Drops this process's mapping of the code segment that holds this function (the binary's,
/// or a test binary's); true when it did.
pub fn code_pages() -> bool {
    let here = code_pages as *const () as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let Some((start, end)) = maps.lines().find_map(|l| executable_range(l, here)) else {
        return false;
    };
    let Some(addr) = NonNull::new(start as *mut c_void) else {
        return false;
    };
    // SAFETY: the range is a private, read-only, executable mapping of a file: none of its
    // pages was ever written (a running binary cannot be written to: ETXTBSY), so what
    // MADV_DONTNEED drops reads back the same from the file.
    unsafe { madvise(addr, end - start, MmapAdvise::MADV_DONTNEED) }.is_ok()
}

/// The range of a line of /proc/self/maps if it is a private read-only executable mapping of
/// a file that holds `addr`.
fn executable_range(line: &str, addr: usize) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    // offset, device, inode, then the path: a file, not an anonymous mapping.
    let path = fields.nth(3)?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (perms == "r-xp" && path.starts_with('/') && start <= addr && addr < end)
        .then_some((start, end))
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
                inside = executable_range(line, here).is_some();
            } else if inside {
                if let Some(kb) = line.strip_prefix("Rss:") {
                    return kb.trim().trim_end_matches(" kB").trim().parse().unwrap();
                }
            }
        }
        panic!("no code mapping holds code_pages");
    }

    #[test]
    fn only_a_private_executable_file_mapping_that_holds_the_address_is_taken() {
        let line = "55f0-5600 r-xp 00241000 fd:01 4321   /usr/bin/leaderrun";
        assert_eq!(executable_range(line, 0x55f8), Some((0x55f0, 0x5600)));
        assert_eq!(executable_range(line, 0x5600), None);
        let data = "55f0-5600 rw-p 00241000 fd:01 4321   /usr/bin/leaderrun";
        assert_eq!(executable_range(data, 0x55f8), None);
        let anonymous = "55f0-5600 r-xp 00000000 00:00 0";
        assert_eq!(executable_range(anonymous, 0x55f8), None);
        let vdso = "55f0-5600 r-xp 00000000 00:00 0   [vdso]";
        assert_eq!(executable_range(vdso, 0x55f8), None);
    }

    #[test]
    fn the_code_segment_is_given_back_and_runs_on() {
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
