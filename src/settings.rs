//! Durations, the timing safety rules, names, identity: everything checked
//! before the first API call.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("{option} must be greater than zero (got {value:?})")]
    Zero {
        option: &'static str,
        value: Duration,
    },
    #[error(
        "--renew-deadline ({renew:?}) + --kill-grace ({grace:?}) + margin ({margin:?}: 5% of the lease + 100ms) must be at most --lease-duration ({lease:?}): \
         the child must be dead before another copy may take the lock over. \
         Raise --lease-duration or lower --renew-deadline or --kill-grace"
    )]
    DeadlineTooLong {
        renew: Duration,
        grace: Duration,
        margin: Duration,
        lease: Duration,
    },
    #[error(
        "--retry-period ({retry:?}) x 1.2 must be less than --renew-deadline ({renew:?}): \
         the leader needs more than one try to renew before its deadline. Lower --retry-period or raise --renew-deadline"
    )]
    RetryTooLong { retry: Duration, renew: Duration },
    #[error("--lease-duration ({0:?}) must be a whole number of seconds of at least 1s: the lock records it in seconds")]
    LeaseNotWholeSeconds(Duration),
    #[error("--name {name:?} is not a valid {what}: {why}")]
    BadName {
        name: String,
        what: &'static str,
        why: String,
    },
    #[error("--namespace {0:?} is not a valid namespace: it must be a lowercase RFC 1123 label (at most 63 of a-z, 0-9 and '-', starting and ending with a letter or digit)")]
    BadNamespace(String),
    #[error("--identity must not be empty")]
    EmptyIdentity,
    #[error("--identity is {0} bytes long; at most 1024 are allowed")]
    IdentityTooLong(usize),
}

/// Reads `500ms`, `15s`, `1m30s`, `2h`, `1.5s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("a duration is needed, like 500ms, 15s or 1m30s".into());
    }
    if t.starts_with('-') {
        return Err(format!(
            "{s:?} is negative; a duration like 500ms, 15s or 1m30s is needed"
        ));
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "{s:?} is not a duration: expected a number at {rest:?} (like 500ms, 15s or 1m30s)"
            ));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("{s:?} is not a duration: bad number {:?}", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("{s:?} has no unit: write 15s, 500ms, 1m or 1h")),
            u => {
                return Err(format!(
                    "{s:?} has an unknown unit {u:?}: use ms, s, m or h"
                ))
            }
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("{s:?} is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Followers stretch each retry period by a random factor up to this, so that copies started
/// together do not keep writing together (client-go's JitterFactor of 1.2).
pub const FOLLOWER_JITTER: f64 = 1.2;

thread_local! {
    /// A seeded source for `follower_jitter` on this thread (the simulator's), so that a seed
    /// replays exactly; None: the thread's random generator.
    static JITTER: std::cell::RefCell<Option<rand::rngs::StdRng>> = const { std::cell::RefCell::new(None) };
}

/// A factor in [1, FOLLOWER_JITTER) to stretch a follower's retry period by.
pub fn follower_jitter() -> f64 {
    JITTER.with(|j| match j.borrow_mut().as_mut() {
        Some(rng) => rng.random_range(1.0..FOLLOWER_JITTER),
        None => rand::rng().random_range(1.0..FOLLOWER_JITTER),
    })
}

/// A random number for a process's marks (election/writes.rs), from the same source.
pub fn random_u64() -> u64 {
    JITTER.with(|j| match j.borrow_mut().as_mut() {
        Some(rng) => rng.random(),
        None => rand::rng().random(),
    })
}

/// Makes `follower_jitter` and `random_u64` on this thread follow `seed` (None: random again). For the
/// deterministic simulation, where one thread runs a whole simulated world.
pub fn seed_follower_jitter(seed: Option<u64>) {
    use rand::SeedableRng;
    JITTER.with(|j| *j.borrow_mut() = seed.map(rand::rngs::StdRng::seed_from_u64));
}

/// The election's timing, checked against the safety rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub kill_grace: Duration,
}

impl Timing {
    /// How long a standby stays ready (`/readyz`) without an answer from the API server: a
    /// lease duration (after that it can say nothing of who leads), or four retry periods if
    /// longer (a healthy standby hears at least every three: its watch, or a plain read).
    pub fn standby_stale_after(&self) -> Duration {
        self.lease_duration.max(self.retry_period * 4)
    }

    /// What the timing rule keeps free: 5% of the lease for the hosts' clocks (each may run
    /// 2.5% fast or slow), and 100 ms for the guard's two timers (its stop at the deadline, its
    /// KILL), each acting up to 50 ms late on a loaded host. Shown by the simulation
    /// (docs/RELIABILITY.md): less than either part is caught.
    pub fn margin(&self) -> Duration {
        self.lease_duration / 20 + Duration::from_millis(100)
    }

    /// A follower takes over `lease_duration` after it observed the last renew; that
    /// renew was sent earlier still. So if the leader's child is dead by
    /// `last_renew_sent + renew_deadline + kill_grace`, and that is below the lease
    /// duration with a margin, two children never run at once.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (option, value) in [
            ("--lease-duration", self.lease_duration),
            ("--renew-deadline", self.renew_deadline),
            ("--retry-period", self.retry_period),
        ] {
            if value.is_zero() {
                return Err(SettingsError::Zero { option, value });
            }
        }
        if self.lease_duration.subsec_nanos() != 0 {
            return Err(SettingsError::LeaseNotWholeSeconds(self.lease_duration));
        }
        if self.renew_deadline + self.kill_grace + self.margin() > self.lease_duration {
            return Err(SettingsError::DeadlineTooLong {
                renew: self.renew_deadline,
                grace: self.kill_grace,
                margin: self.margin(),
                lease: self.lease_duration,
            });
        }
        if self.retry_period.mul_f64(FOLLOWER_JITTER) >= self.renew_deadline {
            return Err(SettingsError::RetryTooLong {
                retry: self.retry_period,
                renew: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// The name rule of both kinds: a DNS-1123 subdomain.
pub fn validate_name(name: &str) -> Result<(), SettingsError> {
    let bad = |why: &str| SettingsError::BadName {
        name: name.to_string(),
        what: "lock name",
        why: why.to_string(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    if !name.split('.').all(is_dns1123_label) {
        return Err(bad("it must be a lowercase RFC 1123 subdomain: a-z, 0-9, '-' and '.', starting and ending with a letter or digit (e.g. nightly-report)"));
    }
    Ok(())
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn validate_namespace(ns: &str) -> Result<(), SettingsError> {
    if is_dns1123_label(ns) {
        Ok(())
    } else {
        Err(SettingsError::BadNamespace(ns.to_string()))
    }
}

/// An identity is written into the record; the API server does not bound it, we do.
pub fn validate_identity(id: &str) -> Result<(), SettingsError> {
    if id.trim().is_empty() {
        return Err(SettingsError::EmptyIdentity);
    }
    if id.len() > 1024 {
        return Err(SettingsError::IdentityTooLong(id.len()));
    }
    Ok(())
}

/// Where this copy runs: `POD_NAME`, else the host name.
pub fn host_name() -> Option<String> {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
}

/// `POD_NAME`, else the host name, plus a random suffix so that two copies on
/// one host never share an identity.
pub fn default_identity() -> String {
    let base = host_name().unwrap_or_else(|| "leaderrun".to_string());
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{base}_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(lease: u64, renew: u64, retry: u64, grace: u64) -> Timing {
        Timing {
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
            kill_grace: Duration::from_secs(grace),
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("15").unwrap_err().contains("no unit"));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_standby_is_stale_after_a_lease_or_four_retry_periods_if_longer() {
        assert_eq!(
            t(15, 10, 2, 3).standby_stale_after(),
            Duration::from_secs(15)
        );
        assert_eq!(
            t(15, 10, 5, 3).standby_stale_after(),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn defaults_pass_the_safety_rule() {
        assert_eq!(t(15, 10, 2, 3).validate(), Ok(()));
    }

    #[test]
    fn the_margin_is_a_twentieth_of_the_lease_and_100ms() {
        let ms = |lease, renew, grace| Timing {
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(200),
            kill_grace: Duration::from_millis(grace),
        };
        // The limit exactly passes; a millisecond more does not (the simulation's edge timings).
        assert_eq!(ms(4000, 2700, 1000).validate(), Ok(()));
        assert!(ms(4000, 2701, 1000).validate().is_err());
        assert_eq!(ms(1000, 600, 250).validate(), Ok(()));
        assert!(ms(1000, 601, 250).validate().is_err());
        let err = ms(4000, 2900, 1000).validate().unwrap_err();
        assert!(err.to_string().contains("margin (300ms"), "{err}");
    }

    #[test]
    fn deadline_plus_grace_must_fit_in_the_lease() {
        let err = t(15, 10, 2, 5).validate().unwrap_err();
        assert!(matches!(err, SettingsError::DeadlineTooLong { .. }));
        assert!(
            err.to_string().contains("--renew-deadline")
                && err.to_string().contains("--lease-duration")
        );
    }

    #[test]
    fn retry_must_leave_room_for_several_tries() {
        assert!(matches!(
            t(30, 10, 9, 1).validate(),
            Err(SettingsError::RetryTooLong { .. })
        ));
        assert_eq!(
            t(15, 10, 0, 3).validate(),
            Err(SettingsError::Zero {
                option: "--retry-period",
                value: Duration::ZERO
            })
        );
    }

    #[test]
    fn names_are_checked_before_any_request() {
        assert!(validate_name("nightly-report").is_ok());
        assert!(validate_name("Nightly").is_err());
        assert!(validate_name("a_b").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_namespace("kube-system").is_ok());
        assert!(validate_namespace("a.b").is_err());
        assert!(validate_identity("").is_err());
        assert!(validate_identity(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn default_identity_has_a_random_suffix() {
        assert_ne!(default_identity(), default_identity());
    }
}
