//! The table `cargo xtask bench` prints, and how its figures are written.

use std::fmt::Write as _;
use std::time::Duration;

const MIB: f64 = 1024.0 * 1024.0;

/// One line of the table.
struct Row {
    benchmark: String,
    figure: String,
    target: &'static str,
    met: Met,
}

/// Whether a row's figure meets its target.
pub enum Met {
    Yes,
    No,
    /// No target, or no figure to compare.
    Neither,
}

/// The rows so far, in the order they were added.
#[derive(Default)]
pub struct Table(Vec<Row>);

impl Table {
    pub fn add(
        &mut self,
        benchmark: impl Into<String>,
        figure: String,
        target: &'static str,
        met: Met,
    ) {
        self.0.push(Row {
            benchmark: benchmark.into(),
            figure,
            target,
            met,
        });
    }

    pub fn not_available(&mut self, benchmark: impl Into<String>, target: &'static str, why: &str) {
        self.add(benchmark, format!("n/a ({why})"), target, Met::Neither);
    }

    pub fn check(
        &mut self,
        benchmark: impl Into<String>,
        figure: String,
        target: &'static str,
        met: bool,
    ) {
        self.add(
            benchmark,
            figure,
            target,
            if met { Met::Yes } else { Met::No },
        );
    }

    /// A peak-RSS row, held against the 64 MiB target or merely shown.
    pub fn rss(&mut self, label: String, peak_kib: Option<u64>, against_target: bool) {
        match peak_kib {
            Some(kib) if against_target => self.check(
                label,
                mib(kib as f64 * 1024.0),
                "<= 64 MiB",
                kib <= 64 * 1024,
            ),
            Some(kib) => self.add(label, mib(kib as f64 * 1024.0), "-", Met::Neither),
            None => self.not_available(label, "<= 64 MiB", "/proc/<pid>/status unreadable"),
        }
    }

    pub fn render(&self) -> String {
        let header = ["benchmark", "figure", "target", "met?"];
        let cells: Vec<[String; 4]> = self
            .0
            .iter()
            .map(|row| {
                [
                    row.benchmark.clone(),
                    row.figure.clone(),
                    row.target.to_owned(),
                    match row.met {
                        Met::Yes => "yes",
                        Met::No => "NO",
                        Met::Neither => "-",
                    }
                    .to_owned(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 4]| {
            let mut out = String::from("|");
            for (cell, width) in cells.iter().zip(widths) {
                let pad = width - cell.chars().count();
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
            out.push('\n');
            out
        };
        let mut out = line(header);
        out.push('|');
        for width in widths {
            out.push_str(&"-".repeat(width + 2));
            out.push('|');
        }
        out.push('\n');
        for row in &cells {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
        }
        out
    }
}

pub fn per_second(rate: f64) -> String {
    format!("{}/s", thousands(rate.round() as u64))
}

pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / MIB)
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_and_says_what_was_met() {
        let mut table = Table::default();
        table.check("a", "300,000/s".into(), ">= 250,000/s", true);
        table.check("bb", "1/s".into(), ">= 2/s", false);
        table.not_available("ccc", "<= 64 MiB", "release build failed");
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{text}");
        assert!(lines[2].ends_with("| yes  |"), "{text}");
        assert!(lines[3].ends_with("| NO   |"), "{text}");
        assert!(lines[4].contains("n/a (release build failed)"), "{text}");
    }

    #[test]
    fn rss_rows_hold_the_target_only_when_asked() {
        let mut table = Table::default();
        table.rss("held".into(), Some(70 * 1024), true);
        table.rss("shown".into(), Some(70 * 1024), false);
        table.rss("unread".into(), None, true);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[2].contains("70.0 MiB") && lines[2].ends_with("| NO   |"),
            "{text}"
        );
        assert!(lines[3].ends_with("| -    |"), "{text}");
        assert!(
            lines[4].contains("n/a (/proc/<pid>/status unreadable)"),
            "{text}"
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
