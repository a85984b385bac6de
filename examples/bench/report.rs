//! docs/PERFORMANCE.md and docs/performance.png from the figures.

use std::fmt::Write as _;
use std::path::Path;

use crate::peers::Impl;
use crate::{Cost, Figures, Spread};

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
        / 1024.0;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem:.0} GiB, Linux {}",
        kernel.trim()
    )
}

fn num(v: f64, d: usize) -> String {
    if v.is_finite() {
        format!("{v:.d$}")
    } else {
        "-".into()
    }
}

fn spread(v: &[(Impl, Spread)], w: Impl) -> Option<Spread> {
    v.iter().find(|x| x.0 == w).map(|x| x.1)
}

fn median_of(v: &[(Impl, Spread)], w: Impl) -> f64 {
    spread(v, w).map_or(f64::NAN, |s| s.median)
}

fn row(f: &Figures, w: Impl) -> Vec<(f64, f64)> {
    f.load
        .iter()
        .find(|x| x.0 == w)
        .map(|x| x.1.clone())
        .unwrap_or_default()
}

fn cost(f: &Figures, w: Impl) -> Option<Cost> {
    f.cost.iter().find(|x| x.0 == w).map(|x| x.1)
}

/// One table per server: a column per system, a row per figure.
fn table(md: &mut String, f: &Figures, sizes: &[usize]) {
    let cols: Vec<Impl> = f.handover.iter().map(|x| x.0).collect();
    let _ = writeln!(
        md,
        "### Against {} (measured in {:.0} s)\n",
        f.server, f.seconds
    );
    let mut head = String::from("| figure |");
    let mut sep = String::from("|---|");
    for w in &cols {
        let _ = write!(head, " {} |", w.label());
        sep.push_str("---|");
    }
    let _ = writeln!(md, "{head}\n{sep}");
    let line = |md: &mut String, label: &str, value: &dyn Fn(Impl) -> String| {
        let mut l = format!("| {label} |");
        for &w in &cols {
            let _ = write!(l, " {} |", value(w));
        }
        let _ = writeln!(md, "{l}");
    };
    let floor = format!("{} / {}", num(f.floor.median, 1), num(f.floor.p95, 1));
    line(
        md,
        "**the server's own floor for a handover**, median / p95 (ms)",
        &|_| floor.clone(),
    );
    let sp = |v: &[(Impl, Spread)], w: Impl, d: usize| {
        spread(v, w).map_or("-".into(), |s| {
            format!("{} / {} ({})", num(s.median, d), num(s.p95, d), s.runs)
        })
    };
    line(md, "graceful handover, median / p95 (runs), ms", &|w| {
        sp(&f.handover, w, 1)
    });
    line(md, "the same, above the floor, median (ms)", &|w| {
        num(median_of(&f.handover, w) - f.floor.median, 1)
    });
    let process = format!("{} / {}", num(f.process.median, 1), num(f.process.p95, 1));
    line(
        md,
        "a child process's own cost, no election (the job's last line to the next job's first), median / p95 (ms)",
        &|w| if w.runs_a_child() { process.clone() } else { "- (in process)".into() },
    );
    line(
        md,
        "graceful handover above the floor and the child process's cost, median (ms)",
        &|w| {
            let child = if w.runs_a_child() {
                f.process.median
            } else {
                0.0
            };
            num(median_of(&f.handover, w) - f.floor.median - child, 1)
        },
    );
    line(
        md,
        "takeover after the lease ran out (from the last renew seen), median / p95 (runs), ms",
        &|w| sp(&f.expiry, w, 0),
    );
    line(
        md,
        "crash failover from the SIGKILL, minus the lease (below zero: the lease ran from the last renew), median (ms)",
        &|w| num(median_of(&f.crash, w), 0),
    );
    for (i, size) in sizes.iter().enumerate() {
        line(md, &format!("API requests/s, {size} candidates"), &|w| {
            num(row(f, w).get(i).map_or(f64::NAN, |x| x.0), 2)
        });
    }
    for (i, size) in sizes.iter().enumerate() {
        line(md, &format!("writes/s, {size} candidates"), &|w| {
            num(row(f, w).get(i).map_or(f64::NAN, |x| x.1), 2)
        });
    }
    line(
        md,
        "memory while leading, RSS / PSS (MiB; leaderrun: with its guard)",
        &|w| {
            cost(f, w).map_or("-".into(), |c| {
                format!("{} / {}", num(c.rss, 1), num(c.pss, 1))
            })
        },
    );
    line(md, "CPU seconds per hour of leading", &|w| {
        cost(f, w).map_or("-".into(), |c| num(c.cpu_per_hour, 2))
    });
    line(
        md,
        "shares one lock with leaderrun: never two leaders",
        &|w| {
            f.respect
                .iter()
                .find(|x| x.0 == w)
                .map_or("-".into(), |x| x.1.summary())
        },
    );
    let polling = row(f, Impl::LeaderrunPolling);
    if !polling.is_empty() {
        let v: Vec<String> = polling.iter().map(|x| format!("{:.2}", x.0)).collect();
        let s: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(
            md,
            "\nleaderrun polling (watch refused): {} requests/s at {} candidates.",
            v.join(" / "),
            s.join(" / ")
        );
    }
    let _ = writeln!(
        md,
        "\n`leaderrun inspect`, median of 20: {} ms. `step-down` to the standby's start, median of 3: {} ms. `leaderrun --no-wait -- true`, median of 20: {} ms when it wins a free lock, {} ms when the lock is held. What a win asks of the API, in process with no job (a new connection, a read, a taking write, a release; the one-shot's floor): median {} ms, p95 {} ms.\n",
        num(f.inspect_ms, 1),
        num(f.step_down_ms, 1),
        num(f.one_shot.0, 1),
        num(f.one_shot.1, 1),
        num(f.one_shot_floor.median, 1),
        num(f.one_shot_floor.p95, 1)
    );
}

fn targets(md: &mut String, f: &Figures, sizes: &[usize]) {
    let h = spread(&f.handover, Impl::Leaderrun);
    let e = spread(&f.expiry, Impl::Leaderrun);
    let c = cost(f, Impl::Leaderrun).unwrap_or_default();
    let loads = row(f, Impl::Leaderrun);
    let first = loads.first().map_or(f64::NAN, |x| x.0);
    let last = loads.last().map_or(f64::NAN, |x| x.0);
    let puts = loads.iter().map(|x| x.1).fold(0.0, f64::max);
    let emulator = f.server == "kube-emulator";
    let slack = if emulator { 1.0 } else { 2.0 };
    let t = |ok: bool, text: String| format!("- {} {text}\n", if ok { "met:" } else { "MISSED:" });
    let _ = writeln!(md, "Against {}:\n", f.server);
    if let Some(h) = h {
        let over = h.median - f.floor.median;
        md.push_str(&t(
            over <= slack,
            format!(
                "graceful handover within {slack} ms of the floor (median): {:.1} ms against {:.1} ms, {over:+.1} ms",
                h.median, f.floor.median
            ),
        ));
        // The job is a child process, which the server's floor does not contain: the same
        // target read against the floor plus what a bare fork and exec of the job costs.
        let over = over - f.process.median;
        md.push_str(&t(
            over <= slack,
            format!(
                "the same, counting the job's own process cost ({:.1} ms, no election) as floor: {over:+.1} ms",
                f.process.median
            ),
        ));
    }
    if let Some(e) = e {
        md.push_str(&t(
            e.p95 <= 100.0,
            format!(
                "takeover within 100 ms of the lease running out: median {:.0} ms, p95 {:.0} ms",
                e.median, e.p95
            ),
        ));
    }
    md.push_str(&t(
        last <= first * 1.5 + 0.5,
        format!(
            "API requests/s independent of the number of watching followers: {first:.2} at {} vs {last:.2} at {}",
            sizes.first().unwrap_or(&0),
            sizes.last().unwrap_or(&0)
        ),
    ));
    md.push_str(&t(
        puts <= 0.55,
        format!("at most one write per retry period (2s) while leading: {puts:.2} writes/s"),
    ));
    md.push_str(&t(
        c.pss < 6.0,
        format!(
            "leaderrun and its guard together under 6 MiB PSS while leading: {:.1} MiB (RSS {:.1} MiB, the guard's {:.1})",
            c.pss, c.rss, c.guard_rss
        ),
    ));
    md.push_str(&t(
        f.one_shot.0 < 15.0 && f.one_shot.1 < 15.0,
        format!(
            "a one-shot `leaderrun --no-wait -- true` under 15 ms, winning or losing: {:.1} ms, {:.1} ms",
            f.one_shot.0, f.one_shot.1
        ),
    ));
    md.push_str(&t(
        f.inspect_ms < 15.0,
        format!("`leaderrun inspect` under 15 ms: {:.1} ms", f.inspect_ms),
    ));
    md.push('\n');
}

/// Every figure where a peer measured better than leaderrun, against any server.
fn better(figures: &[Figures], sizes: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    for f in figures {
        let lr_h = median_of(&f.handover, Impl::Leaderrun);
        let lr_e = median_of(&f.expiry, Impl::Leaderrun);
        let lr_c = cost(f, Impl::Leaderrun).unwrap_or_default();
        let lr_load = row(f, Impl::Leaderrun);
        for (w, _) in f.handover.iter().filter(|x| x.0 != Impl::Leaderrun) {
            let mut say = |what: &str, theirs: f64, ours: f64, unit: &str| {
                if theirs < ours {
                    out.push(format!(
                        "{}, {}: {what} {theirs:.2} {unit} against leaderrun's {ours:.2}",
                        w.label(),
                        f.server
                    ));
                }
            };
            say("graceful handover", median_of(&f.handover, *w), lr_h, "ms");
            say(
                "takeover after the lease",
                median_of(&f.expiry, *w),
                lr_e,
                "ms",
            );
            if let Some(c) = cost(f, *w) {
                say("PSS while leading", c.pss, lr_c.pss, "MiB");
                say("CPU per hour", c.cpu_per_hour, lr_c.cpu_per_hour, "s");
            }
            for ((theirs, ours), n) in row(f, *w).iter().zip(&lr_load).zip(sizes) {
                say(
                    &format!("requests/s at {n} candidates"),
                    theirs.0,
                    ours.0,
                    "",
                );
                say(&format!("writes/s at {n} candidates"), theirs.1, ours.1, "");
            }
        }
    }
    out
}

pub fn report(figures: &[Figures], sizes: &[usize], total: f64) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Performance: leaderrun and the elections users pick instead\n"
    );
    let servers: Vec<&str> = figures.iter().map(|f| f.server.as_str()).collect();
    let _ = writeln!(
        md,
        "Measured with `cargo run --release --example bench` on {} ({}), one Lease per run, timings 15s/10s/2s for every system, against {}. The run took {total:.0} s.\n",
        machine(),
        chrono::Utc::now().format("%Y-%m-%d"),
        servers.join(" and against ")
    );
    let _ = writeln!(md, "![chart](performance.png)\n\n## Figures\n");
    for f in figures {
        table(&mut md, f, sizes);
    }
    let _ = writeln!(md, "## Targets\n");
    for f in figures {
        targets(&mut md, f, sizes);
    }
    let _ = writeln!(md, "## Where a peer measured better\n");
    let b = better(figures, sizes);
    if b.is_empty() {
        let _ = writeln!(md, "Nowhere in this run.\n");
    }
    for l in b {
        let _ = writeln!(md, "- {l}");
    }
    md.push_str(NOTES);
    md
}

const NOTES: &str = include_str!("notes.md");

/// A horizontal bar chart on a log time axis: one bar per system, the floor a dashed line.
fn log_panel(title: &str, bars: &[(Impl, f64)], floor: Option<f64>, x0: f64, y0: f64) -> String {
    let (left, width, bar_h) = (x0 + 200.0, 330.0, 22.0);
    let (lo, hi) = (0.1_f64, 100_000.0_f64);
    let x =
        |v: f64| left + (v.clamp(lo, hi).log10() - lo.log10()) / (hi.log10() - lo.log10()) * width;
    let font = "font-family='DejaVu Sans'";
    let mut s = format!(
        "<text x='{}' y='{}' font-size='14' {font} text-anchor='middle'>{title}</text>",
        left + width / 2.0,
        y0 + 16.0
    );
    let top = y0 + 30.0;
    let bottom = top + bars.len() as f64 * (bar_h + 6.0);
    for (i, p) in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]
        .iter()
        .enumerate()
    {
        let label = ["0.1", "1", "10", "100", "1 s", "10 s", "100 s"][i];
        let _ = write!(s, "<line x1='{0:.1}' y1='{top}' x2='{0:.1}' y2='{bottom}' stroke='#ddd'/><text x='{0:.1}' y='{1}' font-size='10' {font} text-anchor='middle'>{label}</text>", x(*p), bottom + 12.0);
    }
    for (i, (w, v)) in bars.iter().enumerate() {
        let y = top + i as f64 * (bar_h + 6.0);
        let _ = write!(
            s,
            "<text x='{}' y='{}' font-size='11' {font} text-anchor='end'>{}</text>",
            left - 6.0,
            y + 15.0,
            w.label()
        );
        if v.is_finite() {
            let text = if *v < 1.0 {
                format!("{v:.2} ms")
            } else if *v < 1000.0 {
                format!("{v:.1} ms")
            } else {
                format!("{:.2} s", v / 1000.0)
            };
            let _ = write!(s, "<rect x='{left}' y='{y}' width='{:.1}' height='{bar_h}' fill='{}'/><text x='{:.1}' y='{}' font-size='10' {font}>{text}</text>", (x(*v) - left).max(1.0), w.color(), x(*v) + 4.0, y + 15.0);
        }
    }
    if let Some(fl) = floor {
        let _ = write!(s, "<line x1='{0:.1}' y1='{1}' x2='{0:.1}' y2='{bottom}' stroke='black' stroke-dasharray='4,3'/><text x='{0:.1}' y='{2}' font-size='10' {font} text-anchor='middle'>the server's floor {fl:.1} ms</text>", x(fl), top - 4.0, top - 4.0);
    }
    s
}

/// Handover and takeover, per server, on a log time axis (the systems differ by three orders
/// of magnitude), with the floor drawn.
pub fn chart(figures: &[Figures], path: &Path) -> Result<(), String> {
    let mut body = String::new();
    let panel_h = 230.0;
    for (i, f) in figures.iter().enumerate() {
        let y0 = 10.0 + i as f64 * panel_h;
        let handover: Vec<(Impl, f64)> = f.handover.iter().map(|x| (x.0, x.1.median)).collect();
        let expiry: Vec<(Impl, f64)> = f.expiry.iter().map(|x| (x.0, x.1.median)).collect();
        body.push_str(&log_panel(
            &format!("graceful handover, median, {}", f.server),
            &handover,
            Some(f.floor.median),
            0.0,
            y0,
        ));
        body.push_str(&log_panel(
            &format!("takeover after the lease ran out, median, {}", f.server),
            &expiry,
            None,
            600.0,
            y0,
        ));
    }
    let (w, h) = (1200.0, 20.0 + figures.len() as f64 * panel_h);
    let svg = format!("<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}'><rect width='{w}' height='{h}' fill='white'/>{body}</svg>");
    write_png(&svg, path)
}

fn write_png(svg: &str, path: &Path) -> Result<(), String> {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &opt).map_err(|e| e.to_string())?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("empty chart")?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.save_png(path).map_err(|e| e.to_string())
}
