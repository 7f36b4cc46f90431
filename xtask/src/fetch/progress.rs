//! Download progress: an indicatif bar on a terminal, a few plain log lines otherwise (CI logs).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Plain-log mode prints this often when the size is unknown.
const UNKNOWN_SIZE_STEP: u64 = 16 << 20;

pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    position: u64,
    next_report: u64,
}

impl Progress {
    /// Starts reporting on `label` (usually the URL); chooses the bar when stderr is a terminal.
    pub fn new(label: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("the progress template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_string());
            bar
        });
        if bar.is_none() {
            eprintln!("fetch: downloading {label}");
        }
        Progress {
            label: label.to_string(),
            bar,
            total: None,
            position: 0,
            next_report: 0,
        }
    }

    /// The full size once the server told it, and where this attempt starts (after a resume).
    pub fn restart_at(&mut self, position: u64, total: Option<u64>) {
        self.position = position;
        self.total = total;
        if let Some(bar) = &self.bar {
            bar.set_length(total.unwrap_or(0));
            bar.set_position(position);
        } else if position > 0 {
            eprintln!(
                "fetch: resuming {} at {}",
                self.label,
                Self::amount(position, total)
            );
        }
        self.next_report = self.step_after(position);
    }

    pub fn advance(&mut self, bytes: u64) {
        self.position += bytes;
        if let Some(bar) = &self.bar {
            bar.set_position(self.position);
        } else if self.position >= self.next_report {
            eprintln!(
                "fetch: {}: {}",
                self.label,
                Self::amount(self.position, self.total)
            );
            self.next_report = self.step_after(self.position);
        }
    }

    /// A line that must not be torn by the bar (retries, restarts).
    pub fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("fetch: {message}")),
            None => eprintln!("fetch: {message}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "fetch: downloaded {} ({})",
            self.label,
            Self::amount(self.position, None)
        );
    }

    /// Plain mode reports at every tenth of the total, or every 16 MiB.
    fn step_after(&self, position: u64) -> u64 {
        let step = match self.total {
            Some(total) if total > 0 => (total / 10).max(1),
            _ => UNKNOWN_SIZE_STEP,
        };
        (position / step + 1) * step
    }

    fn amount(position: u64, total: Option<u64>) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        match total {
            Some(total) if total > 0 => format!(
                "{:.1} of {:.1} MB ({}%)",
                mb(position),
                mb(total),
                position * 100 / total
            ),
            _ => format!("{:.1} MB", mb(position)),
        }
    }
}
