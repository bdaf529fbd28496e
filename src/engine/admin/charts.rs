//! The admin page's charts of the last hour (hit ratio, renders, failures, origin latency),
//! drawn on the server as inline SVG: this module computes every coordinate and label, and
//! `admin.html` only writes them into `<svg>` elements (escaped like any value), so the page
//! needs no script and no front-end framework to show them.

use crate::engine::stats::Counters;
use serde::Serialize;

const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 46.0;

/// One chart, ready for the template.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Chart {
    /// Heading, e.g. "Hit ratio".
    pub title: String,
    /// The y axis' unit, e.g. "%", "ms", "per minute".
    pub y_label: String,
    /// The x axis' label.
    pub x_label: String,
    /// One line of text summing up the hour (also the SVG's accessible description).
    pub summary: String,
    /// Whether the hour has no data for this chart.
    pub empty: bool,
    /// The drawn series.
    pub series: Vec<Series>,
    /// Horizontal grid lines with their labels.
    pub y_ticks: Vec<Tick>,
    /// Time labels under the x axis.
    pub x_ticks: Vec<Tick>,
    /// SVG geometry: the plot area's edges, and the view box.
    pub frame: Frame,
}

/// The plot area of a chart, in SVG user units.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Frame {
    /// `viewBox` width.
    pub width: f64,
    /// `viewBox` height.
    pub height: f64,
    /// Left edge of the plot (the y axis).
    pub left: f64,
    /// Right edge of the plot.
    pub right: f64,
    /// Top edge of the plot.
    pub top: f64,
    /// Bottom edge of the plot (the x axis).
    pub bottom: f64,
    /// Where the y axis' label is centred.
    pub y_label_y: f64,
    /// Where the x axis' label is centred.
    pub x_label_x: f64,
    /// x of the y axis' label.
    pub y_label_x: f64,
    /// y of the x axis' label.
    pub x_label_y: f64,
    /// x where the value labels end (right-aligned).
    pub y_tick_x: f64,
    /// y of the time labels' baseline.
    pub x_tick_y: f64,
}

/// A line of the chart: one polyline per run of slots with data, and a dot for each lone point.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Stroke colour.
    pub color: &'static str,
    /// `points` attributes of the polylines.
    pub lines: Vec<String>,
    /// Points with no neighbour, drawn as dots.
    pub dots: Vec<Point>,
}

/// A point in SVG user units.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Point {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
}

/// An axis label at a position (x for time labels, y for value labels).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Tick {
    /// Position along the axis.
    pub at: f64,
    /// Text.
    pub label: String,
}

/// The four charts of the admin page, from the hour's slots (oldest first, see
/// [`crate::engine::stats::hour_slots`]) of `slot_s` seconds each.
pub fn hour_charts(slots: &[Counters], slot_s: u64) -> Vec<Chart> {
    let per = if slot_s == 60 { "per minute".to_string() } else { format!("per {} min", slot_s / 60) };
    let renders: u64 = slots.iter().map(|s| s.renders).sum();
    let regenerations: u64 = slots.iter().map(|s| s.regenerations).sum();
    let failures: u64 = slots.iter().map(|s| s.failures).sum();
    let mut hour = Counters::default();
    slots.iter().for_each(|s| hour.merge(s));
    let has_data = !hour.is_empty();
    let ratio = match hour.hit_ratio_percent() {
        Some(r) => format!("{r:.0}% of {} cached-or-rendered answers came from the cache", hour.hit + hour.stale + hour.miss),
        None => "no HIT, STALE or MISS answer in the last hour".to_string(),
    };
    let latency = match hour.latency_avg_ms() {
        Some(avg) => format!("average {avg:.0} ms, slowest {} ms, over {renders} renders", hour.latency_max_ms),
        None => "no render in the last hour".to_string(),
    };
    vec![
        chart(
            "Hit ratio",
            "%",
            ratio,
            slot_s,
            has_data,
            Some(100.0),
            vec![("HIT + STALE share of answers", "#1f8a4c", slots.iter().map(|s| s.hit_ratio_percent()).collect())],
        ),
        chart(
            "Renders",
            &per,
            format!("{renders} renders, {regenerations} of them background regenerations"),
            slot_s,
            has_data,
            None,
            vec![
                ("all renders", "#2463c7", slots.iter().map(|s| Some(s.renders as f64)).collect()),
                ("regenerations", "#8a3fc2", slots.iter().map(|s| Some(s.regenerations as f64)).collect()),
            ],
        ),
        chart(
            "Failures",
            &per,
            format!("{failures} failed renders (no answer, timeout or 5xx)"),
            slot_s,
            has_data,
            None,
            vec![("failed renders", "#c62828", slots.iter().map(|s| Some(s.failures as f64)).collect())],
        ),
        chart(
            "Origin latency",
            "ms",
            latency,
            slot_s,
            has_data,
            None,
            vec![
                ("average", "#2463c7", slots.iter().map(|s| s.latency_avg_ms()).collect()),
                ("slowest", "#d9822b", slots.iter().map(|s| (s.renders > 0).then_some(s.latency_max_ms as f64)).collect()),
            ],
        ),
    ]
}

fn chart(title: &str, y_label: &str, summary: String, slot_s: u64, has_data: bool, fixed_max: Option<f64>, series: Vec<(&str, &'static str, Vec<Option<f64>>)>) -> Chart {
    let n = series.first().map_or(0, |s| s.2.len());
    let data_max = series.iter().flat_map(|s| s.2.iter().flatten()).fold(0.0_f64, |a, b| a.max(*b));
    // Counts are 0 where no isolate reported (none served anything); a chart is empty only
    // when no slot has data at all.
    let empty = !has_data || series.iter().all(|s| s.2.iter().all(Option::is_none));
    let (max, step) = match fixed_max {
        Some(m) => (m, m / 4.0),
        None => nice_scale(data_max),
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |i: usize| LEFT + if n > 1 { plot_w * i as f64 / (n - 1) as f64 } else { plot_w };
    let y_of = |v: f64| TOP + plot_h * (1.0 - (v / max).clamp(0.0, 1.0));
    let steps = (max / step).round() as u32;
    let y_ticks = (0..=steps)
        .map(|k| {
            let v = step * k as f64;
            Tick { at: round1(y_of(v)), label: format!("{}{}", number(v, step), if y_label == "%" { "%" } else { "" }) }
        })
        .collect();
    let x_ticks = if n == 0 {
        Vec::new()
    } else {
        // The oldest slot, then every quarter hour back from now.
        let oldest = (n - 1) as u64 * slot_s / 60;
        let mut marks: Vec<u64> = vec![oldest];
        marks.extend([45, 30, 15, 0].into_iter().filter(|m| *m < oldest || (*m == 0 && oldest == 0)));
        marks.dedup();
        marks
            .into_iter()
            .filter_map(|minutes_ago| {
                let back = (minutes_ago * 60 / slot_s.max(1)) as usize;
                let i = (n - 1).checked_sub(back)?;
                Some(Tick { at: round1(x_of(i)), label: if minutes_ago == 0 { "now".into() } else { format!("−{minutes_ago} min") } })
            })
            .collect()
    };
    let series = series
        .into_iter()
        .map(|(name, color, values)| {
            let mut lines = Vec::new();
            let mut dots = Vec::new();
            let mut run: Vec<Point> = Vec::new();
            let mut end_run = |run: &mut Vec<Point>| {
                match run.len() {
                    0 => {}
                    1 => dots.append(run),
                    _ => lines.push(run.drain(..).map(|p| format!("{},{}", p.x, p.y)).collect::<Vec<_>>().join(" ")),
                }
            };
            for (i, v) in values.iter().enumerate() {
                match v {
                    Some(v) => run.push(Point { x: round1(x_of(i)), y: round1(y_of(*v)) }),
                    None => end_run(&mut run),
                }
            }
            end_run(&mut run);
            Series { name: name.to_string(), color, lines, dots }
        })
        .collect();
    Chart {
        title: title.to_string(),
        y_label: y_label.to_string(),
        x_label: "time (last hour)".to_string(),
        summary,
        empty,
        series,
        y_ticks,
        x_ticks,
        frame: Frame {
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            right: WIDTH - RIGHT,
            top: TOP,
            bottom: HEIGHT - BOTTOM,
            y_label_y: round1(TOP + plot_h / 2.0),
            x_label_x: round1(LEFT + plot_w / 2.0),
            y_label_x: 14.0,
            x_label_y: HEIGHT - 8.0,
            y_tick_x: LEFT - 6.0,
            x_tick_y: HEIGHT - BOTTOM + 16.0,
        },
    }
}

/// A y-axis maximum at or above `max` in at most five whole steps of 1, 2 or 5 × 10ⁿ (at
/// least 1: counts and milliseconds have no fractions worth a grid line).
fn nice_scale(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (4.0, 1.0);
    }
    let mut step = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            let ticks = (max / (step * m)).ceil();
            if ticks <= 5.0 {
                return (step * m * ticks, step * m);
            }
        }
        step *= 10.0;
    }
}

fn number(v: f64, step: f64) -> String {
    if step >= 1.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(n: usize) -> Vec<Counters> {
        (0..n).map(|i| Counters::starting(i as u64 * 60_000, 60)).collect()
    }

    #[test]
    fn scales_are_round_and_cover_the_data() {
        assert_eq!(nice_scale(0.0), (4.0, 1.0));
        assert_eq!(nice_scale(3.0), (3.0, 1.0));
        assert_eq!(nice_scale(7.0), (8.0, 2.0));
        assert_eq!(nice_scale(180.0), (200.0, 50.0));
        assert_eq!(nice_scale(480.0), (500.0, 100.0));
        assert_eq!(nice_scale(1234.0), (1500.0, 500.0));
        assert_eq!(nice_scale(0.5), (1.0, 1.0));
    }

    #[test]
    fn the_hit_ratio_is_drawn_where_there_were_answers_and_broken_where_not() {
        let mut s = slots(60);
        for (i, slot) in s.iter_mut().enumerate() {
            if !(10..20).contains(&i) && i != 30 {
                slot.hit = 3;
                slot.miss = 1;
            }
        }
        s[40] = Counters { hit: 0, miss: 0, ..s[40].clone() };
        let charts = hour_charts(&s, 60);
        let ratio = &charts[0];
        assert_eq!(ratio.title, "Hit ratio");
        assert!(!ratio.empty);
        assert_eq!(ratio.series[0].lines.len(), 4, "runs 0-9, 20-29, 31-39, 41-59");
        assert!(ratio.series[0].dots.is_empty());
        // 75 % sits three quarters up the plot.
        let first = ratio.series[0].lines[0].split(' ').next().unwrap().to_string();
        let y: f64 = first.split(',').nth(1).unwrap().parse().unwrap();
        let (top, bottom) = (ratio.frame.top, ratio.frame.bottom);
        assert!((y - (bottom - 0.75 * (bottom - top))).abs() < 0.11, "{y}");
        assert_eq!(ratio.y_ticks.last().unwrap().label, "100%");
        let labels: Vec<&str> = ratio.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["−59 min", "−45 min", "−30 min", "−15 min", "now"]);
        assert_eq!(ratio.x_ticks.last().unwrap().label, "now");
        assert!(ratio.summary.starts_with("75% of"), "{}", ratio.summary);
    }

    #[test]
    fn latency_and_failures_have_their_own_scales_and_an_empty_hour_says_so() {
        let mut s = slots(60);
        s[59].count_render("miss", 120, false);
        s[59].count_render("regenerate", 480, true);
        let charts = hour_charts(&s, 60);
        let latency = &charts[3];
        assert_eq!(latency.y_label, "ms");
        assert_eq!(latency.y_ticks.last().unwrap().label, "500");
        assert_eq!(latency.series[0].dots.len(), 1, "one slot with renders: a dot");
        let expected = latency.frame.top + (latency.frame.bottom - latency.frame.top) * (1.0 - 480.0 / 500.0);
        assert!((latency.series[1].dots[0].y - expected).abs() < 0.11, "{:?}", latency.series[1].dots);
        assert!(latency.summary.contains("average 300 ms, slowest 480 ms"), "{}", latency.summary);
        assert!(!charts[2].empty);
        assert!(charts[2].summary.starts_with("1 failed"));
        let mut no_failures = slots(60);
        no_failures[3].hit = 1;
        assert!(!hour_charts(&no_failures, 60)[2].empty, "0 failures is data, not an empty chart");
        let idle = hour_charts(&slots(60), 60);
        assert!(idle.iter().all(|c| c.empty), "{idle:?}");
        assert_eq!(hour_charts(&slots(12), 300)[1].y_label, "per 5 min");
    }
}
