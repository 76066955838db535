//! `/metrics`: counters and histograms in Prometheus' text format.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counters and histograms for `/metrics`, kept by hand: a few labelled series do not need
/// a metrics framework, and the text format is simple.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), f64>>,
    histograms: Mutex<BTreeMap<(String, String), Histogram>>,
}

/// Upper bounds of the job-duration buckets, seconds: jobs take from a second (help) to
/// the better part of an hour (a large implementation).
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
];

#[derive(Default, Clone)]
struct Histogram {
    /// Per bucket of [`DURATION_BUCKETS`], not cumulative (made cumulative when rendered).
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

impl Metrics {
    pub fn add(&self, name: &str, labels: &[(&str, &str)], v: f64) {
        let labels = render_labels(labels);
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry((name.to_string(), labels)).or_default() += v;
    }

    pub fn render(&self) -> String {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), v) in c.iter() {
            if name != last {
                out.push_str(&format!("# TYPE {name} counter\n"));
                last = name;
            }
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
        drop(c);
        let h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = "";
        for ((name, labels), hist) in h.iter() {
            if name != last {
                out.push_str(&format!("# TYPE {name} histogram\n"));
                last = name;
            }
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (bound, n) in DURATION_BUCKETS.iter().zip(hist.counts) {
                cumulative += n;
                out.push_str(&format!(
                    "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}\n"
                ));
            }
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}\n",
                hist.count
            ));
            out.push_str(&format!("{name}_sum{{{labels}}} {}\n", hist.sum));
            out.push_str(&format!("{name}_count{{{labels}}} {}\n", hist.count));
        }
        out
    }

    /// One observation of a duration-like histogram (buckets of [`DURATION_BUCKETS`]).
    pub fn observe(&self, name: &str, labels: &[(&str, &str)], v: f64) {
        let mut h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let hist = h
            .entry((name.to_string(), render_labels(labels)))
            .or_default();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| v <= *b) {
            hist.counts[i] += 1;
        }
        hist.count += 1;
        hist.sum += v;
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let m = Metrics::default();
        m.observe("d", &[("kind", "x")], 0.5);
        m.observe("d", &[("kind", "x")], 20.0);
        m.observe("d", &[("kind", "x")], 9999.0);
        let text = m.render();
        for line in [
            "# TYPE d histogram",
            "d_bucket{kind=\"x\",le=\"1\"} 1",
            "d_bucket{kind=\"x\",le=\"15\"} 1",
            "d_bucket{kind=\"x\",le=\"30\"} 2",
            "d_bucket{kind=\"x\",le=\"3600\"} 2",
            "d_bucket{kind=\"x\",le=\"+Inf\"} 3",
            "d_sum{kind=\"x\"} 10019.5",
            "d_count{kind=\"x\"} 3",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }
}
