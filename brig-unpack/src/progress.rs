//! Per-layer progress on a terminal (bytes and bytes/s), silent otherwise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Bar {
    label: String,
    total: Option<u64>,
    done_bytes: AtomicU64,
    state: AtomicU64, // 0 waiting, 1 running, 2 done, 3 cached
    // Nanoseconds since the display started, so each layer's rate covers only its own work.
    started_ns: AtomicU64,
    ended_ns: AtomicU64,
}

struct Shared {
    bars: Vec<Bar>,
    stop: AtomicBool,
    start: Instant,
}

/// Tracks compressed bytes read per layer and redraws a small table on stderr.
pub struct Progress {
    shared: Arc<Shared>,
    render: Mutex<Option<JoinHandle<()>>>,
}

fn human(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

impl Progress {
    /// A progress display for layers `(label, compressed size)`; it draws only
    /// when `enabled` and stderr is a terminal.
    pub fn new(layers: Vec<(String, Option<u64>)>, enabled: bool) -> Progress {
        let shared = Arc::new(Shared {
            bars: layers
                .into_iter()
                .map(|(label, total)| Bar {
                    label,
                    total,
                    done_bytes: AtomicU64::new(0),
                    state: AtomicU64::new(0),
                    started_ns: AtomicU64::new(0),
                    ended_ns: AtomicU64::new(0),
                })
                .collect(),
            stop: AtomicBool::new(false),
            start: Instant::now(),
        });
        let render = if enabled && std::io::stderr().is_terminal() && !shared.bars.is_empty() {
            let s = Arc::clone(&shared);
            Some(std::thread::spawn(move || {
                let mut drawn = false;
                loop {
                    let stop = s.stop.load(Ordering::Relaxed);
                    draw(&s, drawn);
                    drawn = true;
                    if stop {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }))
        } else {
            None
        };
        Progress {
            shared,
            render: Mutex::new(render),
        }
    }

    /// A display that never draws.
    pub fn silent() -> Progress {
        Progress::new(Vec::new(), false)
    }

    /// Adds `n` bytes read for layer `i`.
    pub fn add(&self, i: usize, n: u64) {
        if let Some(b) = self.shared.bars.get(i) {
            if b.state.swap(1, Ordering::Relaxed) == 0 {
                b.started_ns.store(self.now_ns(), Ordering::Relaxed);
            }
            b.done_bytes.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.shared.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Marks the moment layer `i` starts being applied; its rate counts from here
    /// (decoding may have read ahead while earlier layers were applied).
    pub fn begin(&self, i: usize) {
        if let Some(b) = self.shared.bars.get(i) {
            b.started_ns.store(self.now_ns(), Ordering::Relaxed);
        }
    }

    /// Marks layer `i` finished (`cached`: it was already in the store).
    pub fn done(&self, i: usize, cached: bool) {
        if let Some(b) = self.shared.bars.get(i) {
            b.ended_ns.store(self.now_ns(), Ordering::Relaxed);
            b.state.store(if cached { 3 } else { 2 }, Ordering::Relaxed);
        }
    }

    /// Stops drawing, leaving the final table on screen.
    pub fn finish(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Ok(mut r) = self.render.lock() {
            if let Some(h) = r.take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn draw(s: &Shared, redraw: bool) {
    let mut out = String::new();
    if redraw {
        out.push_str(&format!("\x1b[{}A", s.bars.len()));
    }
    let now_ns = u64::try_from(s.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    for b in &s.bars {
        let n = b.done_bytes.load(Ordering::Relaxed);
        let end = match b.ended_ns.load(Ordering::Relaxed) {
            0 => now_ns,
            e => e,
        };
        let secs =
            (end.saturating_sub(b.started_ns.load(Ordering::Relaxed)) as f64 / 1e9).max(0.001);
        let short: String = b.label.chars().take(19).collect();
        let status = match b.state.load(Ordering::Relaxed) {
            0 => "waiting".to_string(),
            3 => "already in store".to_string(),
            st => {
                let pct = b
                    .total
                    .filter(|t| *t > 0)
                    .map(|t| format!("{:3}% ", (n * 100 / t).min(100)))
                    .unwrap_or_default();
                let bar_len = 20usize;
                let filled = b
                    .total
                    .filter(|t| *t > 0)
                    .map(|t| ((n * bar_len as u64) / t).min(bar_len as u64) as usize)
                    .unwrap_or(if st == 2 { bar_len } else { 0 });
                format!(
                    "[{}{}] {pct}{} {}/s{}",
                    "#".repeat(filled),
                    " ".repeat(bar_len - filled),
                    human(n as f64),
                    human(n as f64 / secs),
                    if st == 2 { " done" } else { "" }
                )
            }
        };
        out.push_str(&format!("\x1b[2K{short:<19} {status}\n"));
    }
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(out.as_bytes());
    let _ = e.flush();
}
