//! The one table `vouch bench` prints: each row a figure measured, the ceiling (or reference)
//! it is held against, measured in the same run, their ratio, the target and whether it is met.
//! Rows are plain data, so a new measurement is one more [`Row`] pushed onto a [`Table`].

use serde::Serialize;
use std::fmt::Write as _;

/// A measured quantity and its unit.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// The number, in `unit`.
    pub value: f64,
    /// `µs`, `ms` or `/s`.
    pub unit: &'static str,
}

impl Figure {
    /// Microseconds of one operation.
    pub fn micros(d: std::time::Duration) -> Self {
        Self {
            value: d.as_secs_f64() * 1e6,
            unit: "µs",
        }
    }

    /// Operations per second.
    /// Bytes.
    pub fn bytes(bytes: f64) -> Self {
        Self {
            value: bytes,
            unit: "B",
        }
    }

    pub fn rate(per_second: f64) -> Self {
        Self {
            value: per_second,
            unit: "/s",
        }
    }
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.value;
        match self.unit {
            "µs" if v >= 10_000.0 => write!(f, "{:.1} ms", v / 1e3),
            "µs" if v >= 100.0 => write!(f, "{v:.0} µs"),
            "µs" => write!(f, "{v:.1} µs"),
            "/s" => write!(f, "{} /s", thousands(v)),
            "B" => write!(f, "{v:.0} B"),
            u => write!(f, "{v:.2} {u}"),
        }
    }
}

/// `12345.6` as `12 346`.
fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// How a row's target reads the figures.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// measured ÷ ceiling at most this.
    RatioAtMost {
        /// The bound.
        ratio: f64,
    },
    /// measured ÷ ceiling at least this.
    RatioAtLeast {
        /// The bound.
        ratio: f64,
    },
    /// measured ÷ reference at most this share (printed as a percentage).
    ShareAtMost {
        /// The bound, 0.1 for 10 %.
        share: f64,
    },
    /// The measured figure (µs) below this many microseconds.
    MicrosBelow {
        /// The bound.
        micros: f64,
    },
    /// The measured rate at least this many per second.
    RateAtLeast {
        /// The bound.
        per_second: f64,
    },
    /// measured ÷ reference reported as a share, with no bound.
    ShareReported,
    /// Reported only.
    None,
}

impl Target {
    fn met(&self, measured: f64, ratio: f64) -> Option<bool> {
        Some(match *self {
            Self::RatioAtMost { ratio: r } | Self::ShareAtMost { share: r } => ratio <= r,
            Self::RatioAtLeast { ratio: r } => ratio >= r,
            Self::MicrosBelow { micros } => measured < micros,
            Self::RateAtLeast { per_second } => measured >= per_second,
            Self::ShareReported | Self::None => return None,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::RatioAtMost { ratio } => write!(f, "≤ {ratio}×"),
            Self::RatioAtLeast { ratio } => write!(f, "≥ {ratio}×"),
            Self::ShareAtMost { share } => write!(f, "≤ {:.0} %", share * 100.0),
            Self::MicrosBelow { micros } if micros >= 1000.0 => {
                write!(f, "< {} ms", micros / 1000.0)
            }
            Self::MicrosBelow { micros } => write!(f, "< {micros} µs"),
            Self::RateAtLeast { per_second } => write!(f, "≥ {} /s", thousands(per_second)),
            Self::ShareReported | Self::None => f.write_str("reported"),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What is measured.
    pub name: String,
    /// The figure (`None`: the row was skipped, `note` says why).
    pub measured: Option<Figure>,
    /// What it is held against, measured in the same run.
    pub ceiling: Option<Figure>,
    /// measured ÷ ceiling.
    pub ratio: Option<f64>,
    /// The target.
    pub target: Target,
    /// Whether the target is met (`None`: skipped, or reported only).
    pub met: Option<bool>,
    /// How the figures were obtained, or why the row was skipped.
    pub note: String,
}

impl Row {
    /// A measured row: the ratio and whether the target is met follow from the figures.
    pub fn measured(
        name: &str,
        measured: Figure,
        ceiling: Figure,
        target: Target,
        note: impl Into<String>,
    ) -> Self {
        let ratio = if ceiling.value > 0.0 {
            measured.value / ceiling.value
        } else {
            f64::NAN
        };
        Self {
            name: name.into(),
            measured: Some(measured),
            ceiling: Some(ceiling),
            ratio: ratio.is_finite().then_some(ratio),
            met: target.met(measured.value, ratio),
            target,
            note: note.into(),
        }
    }

    /// A row that could not be measured in this run, and why (e.g. "skipped (no swtpm)").
    pub fn skipped(name: &str, target: Target, why: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            measured: None,
            ceiling: None,
            ratio: None,
            target,
            met: None,
            note: why.into(),
        }
    }
}

/// The rows of one run, and what the run was.
#[derive(Debug, Default, Serialize)]
pub struct Table {
    /// The rows, in order.
    pub rows: Vec<Row>,
    /// The run's settings (store, replicas, attestations, evidence size, …).
    pub context: serde_json::Map<String, serde_json::Value>,
}

impl Table {
    /// The table as text: one line per row, then the notes.
    pub fn render(&self) -> String {
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                let dash = || "—".to_string();
                let ratio = match (r.ratio, r.target) {
                    (Some(x), Target::ShareAtMost { .. } | Target::ShareReported) => {
                        format!("{:.1} %", x * 100.0)
                    }
                    (Some(x), _) if x < 10.0 => format!("{x:.2}×"),
                    (Some(x), _) => format!("{x:.1}×"),
                    (None, _) => dash(),
                };
                let met = match (r.met, &r.measured) {
                    (Some(true), _) => "yes".into(),
                    (Some(false), _) => "NO".into(),
                    (None, None) => "skipped".into(),
                    (None, Some(_)) => dash(),
                };
                [
                    r.name.clone(),
                    r.measured.map_or_else(dash, |f| f.to_string()),
                    r.ceiling.map_or_else(dash, |f| f.to_string()),
                    ratio,
                    r.target.to_string(),
                    met,
                ]
            })
            .collect();
        let head = ["row", "measured", "ceiling", "ratio", "target", "met"];
        let mut width = head.map(|h| h.chars().count());
        for c in &cells {
            for (w, s) in width.iter_mut().zip(c) {
                *w = (*w).max(s.chars().count());
            }
        }
        let line = |c: &[String; 6]| {
            let mut s = String::new();
            for (i, (cell, w)) in c.iter().zip(width).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                // The name column left-aligned, the figures right-aligned.
                if i == 0 {
                    let _ = write!(s, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(s, "  {}{cell}", " ".repeat(pad));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(&head.map(String::from));
        out += &line(&width.map(|w| "-".repeat(w)));
        for c in &cells {
            out += &line(c);
        }
        let notes: Vec<_> = self.rows.iter().filter(|r| !r.note.is_empty()).collect();
        if !notes.is_empty() {
            out.push('\n');
            for r in notes {
                let _ = writeln!(out, "{}: {}", r.name, r.note);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rows_compute_their_ratio_and_verdict() {
        let r = Row::measured(
            "a",
            Figure::micros(Duration::from_micros(300)),
            Figure::micros(Duration::from_micros(100)),
            Target::RatioAtMost { ratio: 2.0 },
            "",
        );
        assert_eq!(r.met, Some(false));
        assert!((r.ratio.unwrap_or_default() - 3.0).abs() < 1e-9);
        let r = Row::measured(
            "b",
            Figure::rate(30_000.0),
            Figure::rate(50_000.0),
            Target::RatioAtLeast { ratio: 0.5 },
            "",
        );
        assert_eq!(r.met, Some(true));
        let zero = Row::measured("c", Figure::rate(1.0), Figure::rate(0.0), Target::None, "");
        assert_eq!((zero.ratio, zero.met), (None, None));
        let t = Table {
            rows: vec![
                r,
                zero,
                Row::skipped("d", Target::None, "skipped (no swtpm)"),
            ],
            ..Table::default()
        };
        let text = t.render();
        assert!(text.contains("30 000 /s") && text.contains("yes"), "{text}");
        assert!(text.contains("d: skipped (no swtpm)"), "{text}");
    }
}
