//! Spend over time as SVG drawn on the server: per repository, the daily spend of each role
//! as stacked bars, the month-to-date total as a line and the monthly cap as a dashed line,
//! and a table of totals beside what the same tokens would have cost on the supervisor model
//! alone (the product's cost claim, on this service's own data).

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::pages::usd;
use crate::money::pricing::PriceTable;
use crate::money::Usage;
use crate::store::dashboard::DaySpend;

const DAYS: i64 = 90;
const W: f64 = 900.0;
const H: f64 = 180.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

pub struct Charts {
    pub svg: Markup,
    pub table: Markup,
}

/// One repository's 90 days.
#[derive(Default)]
struct Repo {
    /// Per day: (worker, supervisor) picodollars.
    days: BTreeMap<i64, (i64, i64)>,
    worker: i64,
    supervisor: i64,
    /// The same tokens priced on the supervisor model; `None` when its price is unknown.
    counterfactual: Option<i64>,
}

fn dollars(picos: i64) -> f64 {
    picos as f64 / 1e12
}

fn day_label(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%m-%d").to_string())
        .unwrap_or_default()
}

/// The month (`YYYY-MM`) of a day number.
fn month(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%Y-%m").to_string())
        .unwrap_or_default()
}

fn collect(rows: &[DaySpend], supervisor: Option<&str>) -> BTreeMap<String, Repo> {
    let price = supervisor.and_then(|m| PriceTable::builtin().lookup(m));
    let mut repos: BTreeMap<String, Repo> = BTreeMap::new();
    for r in rows {
        let repo = repos.entry(r.repo.clone()).or_insert_with(|| Repo {
            counterfactual: price.map(|_| 0),
            ..Repo::default()
        });
        let d = repo.days.entry(r.day).or_default();
        if r.role == "supervisor" {
            d.1 += r.cost_picos;
            repo.supervisor += r.cost_picos;
        } else {
            d.0 += r.cost_picos;
            repo.worker += r.cost_picos;
        }
        if let (Some(p), Some(c)) = (price, repo.counterfactual.as_mut()) {
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            let usage = Usage {
                input_tokens: n(r.input_tokens),
                cached_input_tokens: n(r.cached_input_tokens),
                cache_write_tokens: n(r.cache_write_tokens),
                output_tokens: n(r.output_tokens),
            };
            *c += i64::try_from(p.cost(&usage).picos()).unwrap_or(i64::MAX);
        }
    }
    repos
}

/// The charts and the table for `rows` (days since 1970 from `first`), with each repository's
/// monthly cap.
pub fn per_repo(
    rows: &[DaySpend],
    caps: &BTreeMap<String, Option<i64>>,
    first: i64,
    supervisor: Option<&str>,
) -> Charts {
    let repos = collect(rows, supervisor);
    let svg = html! {
        @if repos.is_empty() { p.muted { "No settled spend in the last 90 days." } }
        @for (name, r) in &repos {
            h2 { (name) }
            (chart(name, r, caps.get(name).copied().flatten(), first))
        }
    };
    let table = html! {
        table #spend-table {
            tr { th { "repository" } th { "worker" } th { "supervisor" } th { "total" }
                 th { "on " (supervisor.unwrap_or("the supervisor model")) " alone" } th { "saved" } }
            @for (name, r) in &repos {
                @let total = r.worker + r.supervisor;
                tr data-repo=(name) {
                    td { (name) } td.num { (usd(r.worker)) } td.num { (usd(r.supervisor)) } td.num.total { (usd(total)) }
                    td.num.counterfactual { (r.counterfactual.map_or("n/a (no price known)".to_string(), usd)) }
                    td.num { @if let Some(c) = r.counterfactual.filter(|_| total > 0) { (format!("{:.1}×", c as f64 / total as f64)) } }
                }
            }
        }
    };
    Charts { svg, table }
}

fn chart(name: &str, r: &Repo, cap: Option<i64>, first: i64) -> Markup {
    // Month to date, per day, over the 90 days.
    let mut mtd = Vec::with_capacity(DAYS as usize);
    let (mut running, mut current) = (0i64, String::new());
    for d in first..first + DAYS {
        let m = month(d);
        if m != current {
            current = m;
            running = 0;
        }
        let (w, s) = r.days.get(&d).copied().unwrap_or_default();
        running += w + s;
        mtd.push(running);
    }
    let day_max = r
        .days
        .values()
        .map(|(w, s)| w + s)
        .max()
        .unwrap_or(0)
        .max(1);
    let line_max = mtd
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(cap.unwrap_or(0))
        .max(1);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let bar_w = plot_w / DAYS as f64;
    let y_day = |v: i64| TOP + plot_h - plot_h * v as f64 / day_max as f64;
    let y_line = |v: i64| TOP + plot_h - plot_h * v as f64 / line_max as f64;
    let x = |i: i64| LEFT + bar_w * i as f64;
    let points: Vec<String> = mtd
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", x(i as i64) + bar_w / 2.0, y_line(*v)))
        .collect();
    html! {
        svg.spend-chart data-repo=(name) width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img"
            aria-label={ "Daily spend of " (name) } xmlns="http://www.w3.org/2000/svg" {
            rect x=(LEFT) y=(TOP) width=(plot_w) height=(plot_h) fill="#fff" stroke="#d0d7de" {}
            @for (i, d) in (first..first + DAYS).enumerate() {
                @if let Some((w, s)) = r.days.get(&d) {
                    @let xi = x(i as i64);
                    rect.worker x=(format!("{:.1}", xi)) y=(format!("{:.1}", y_day(*w))) width=(format!("{:.1}", bar_w * 0.8))
                        height=(format!("{:.1}", TOP + plot_h - y_day(*w))) fill="#0969da" {
                        title { (day_label(d)) " worker " (usd(*w)) }
                    }
                    rect.supervisor x=(format!("{:.1}", xi)) y=(format!("{:.1}", y_day(w + s))) width=(format!("{:.1}", bar_w * 0.8))
                        height=(format!("{:.1}", y_day(*w) - y_day(w + s))) fill="#8250df" {
                        title { (day_label(d)) " supervisor " (usd(*s)) }
                    }
                }
            }
            polyline.mtd points=(points.join(" ")) fill="none" stroke="#1a7f37" stroke-width="1.5" {}
            @if let Some(c) = cap {
                line.cap x1=(LEFT) x2=(LEFT + plot_w) y1=(format!("{:.1}", y_line(c))) y2=(format!("{:.1}", y_line(c)))
                    stroke="#cf222e" stroke-dasharray="6 4" {}
                text x=(LEFT + plot_w + 4.0) y=(format!("{:.1}", y_line(c) + 4.0)) font-size="11" fill="#cf222e" { "cap " (usd(c)) }
            }
            text x=(LEFT - 6.0) y=(TOP + 10.0) font-size="11" text-anchor="end" fill="#57606a" { (format!("${:.4}", dollars(day_max))) }
            text x=(LEFT - 6.0) y=(TOP + plot_h) font-size="11" text-anchor="end" fill="#57606a" { "$0" }
            text x=(LEFT + plot_w + 4.0) y=(TOP + 10.0) font-size="11" fill="#1a7f37" { (format!("${:.4}", dollars(line_max))) }
            text x=(LEFT) y=(H - 6.0) font-size="11" fill="#57606a" { (day_label(first)) }
            text x=(LEFT + plot_w) y=(H - 6.0) font-size="11" text-anchor="end" fill="#57606a" { (day_label(first + DAYS - 1)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(repo: &str, role: &str, day: i64, cost: i64) -> DaySpend {
        DaySpend {
            repo: repo.into(),
            role: role.into(),
            model: if role == "worker" {
                "gpt-4o-mini"
            } else {
                "gpt-4o"
            }
            .into(),
            day,
            cost_picos: cost,
            input_tokens: 1_000_000,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            output_tokens: 0,
        }
    }

    #[test]
    fn roles_are_split_and_the_counterfactual_priced_on_the_supervisor() {
        let rows = [
            row("o/r", "worker", 20_000, 150_000_000_000),
            row("o/r", "supervisor", 20_000, 2_500_000_000_000),
        ];
        let repos = collect(&rows, Some("gpt-4o"));
        let r = &repos["o/r"];
        assert_eq!(
            (r.worker, r.supervisor),
            (150_000_000_000, 2_500_000_000_000)
        );
        // 2M input tokens at gpt-4o's $2.50 per million.
        assert_eq!(r.counterfactual, Some(5_000_000_000_000));
        assert_eq!(
            collect(&rows, Some("no-such-model"))["o/r"].counterfactual,
            None
        );
    }
}
