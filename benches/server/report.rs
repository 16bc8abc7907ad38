//! The report: Markdown tables printed and written between the markers of
//! `docs/benchmarks.md`, and the SVG chart of the pipeline-16 ratios.

use redlimit_test_support::{median, min_max};

use crate::memory::MemoryRow;
use crate::propagation::{PROPAGATION_CALLS, PropagationRow};
use crate::repo_root;
use crate::throughput::{FLOOR_ROW, PIPELINES, REDIS_CELL_LABEL, ThroughputReport};

/// The throughput table: every row at every pipeline depth.
pub fn throughput_table(reports: &[ThroughputReport]) -> Vec<String> {
    let mut lines = vec![
        "### Throughput (ratio = median over rounds of req/s ÷ INCR req/s in the same round)\n"
            .to_owned(),
        "Rows on one hot key divide by INCR on one hot key; all others by INCR on random keys. \
         `exec ÷ floor`: server-side µs per call (`INFO commandstats`) ÷ the floor module's in \
         the same round; `÷ redis-cell`: req/s ÷ redis-cell's `CL.THROTTLE` req/s in the same \
         round (random-key rows only).\n"
            .to_owned(),
        "| server | command | pipeline | run (median) | req/s (median) | ratio to INCR (median) | ratio min–max | usec_per_call (median) | exec ÷ floor (median) | ÷ redis-cell (median) | allowed | keys expired per call |"
            .to_owned(),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for report in reports {
        let cell = report.row(REDIS_CELL_LABEL);
        for pipeline in PIPELINES {
            for (index, workload) in report.workloads.iter().enumerate() {
                let samples = report.samples_of(index, pipeline);
                if samples.is_empty() {
                    continue; // not selected (`REDLIMIT_BENCH_ROWS`)
                }
                let ratios = report.ratios(index, pipeline);
                let pick = |f: fn(&crate::throughput::Sample) -> f64| -> Vec<f64> {
                    samples.iter().map(|s| f(s)).collect()
                };
                let allowed: Vec<f64> = samples.iter().filter_map(|s| s.allowed).collect();
                let (low, high) = min_max(&ratios);
                let allowed = if allowed.is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.0}%", median(&allowed) * 100.0)
                };
                let random_keys = workload.baseline == report.workloads[FLOOR_ROW].baseline;
                let to_floor = if random_keys && index != FLOOR_ROW {
                    format!("{:.2}×", median(&report.exec_to_floor(index, pipeline)))
                } else {
                    "–".to_owned()
                };
                let to_cell = match cell {
                    Some(cell) if random_keys && index != cell => {
                        format!("{:.2}×", report.median_ratio_to(index, cell, pipeline))
                    }
                    _ => "–".to_owned(),
                };
                lines.push(format!(
                    "| {} | {} | {pipeline} | {:.0} req, {:.2} s | {:.0} | {:.2}× | {low:.2}–{high:.2} | {:.2} | {to_floor} | {to_cell} | {allowed} | {:.2} |",
                    report.server,
                    workload.label,
                    median(&pick(|s| s.requests as f64)),
                    median(&pick(|s| s.seconds)),
                    median(&pick(|s| s.requests_per_second)),
                    median(&ratios),
                    median(&pick(|s| s.usec_per_call)),
                    median(&pick(|s| s.expired_per_call)),
                ));
            }
        }
    }
    lines
}

/// The summary against the two references, pipeline 16: each `RL.*` row's exec µs and
/// its distance from the floor, its ratio to INCR and to redis-cell.
pub fn reference_table(reports: &[ThroughputReport]) -> Vec<String> {
    let mut lines = vec![
        "\n### Against the floor and redis-cell (pipeline 16, random keys, medians over rounds)\n"
            .to_owned(),
        "The floor module does only the module-API work a limiter command must do (parse 3 \
         integers, open the key for writing, read or create a 24-byte module-type value and \
         modify it in place, `RedisModule_SetAbsExpire`, `RedisModule_Replicate` of the 24 \
         bytes, reply 5 integers); `above floor` is a command's own work per call.\n"
            .to_owned(),
        "| server | command | exec µs | floor exec µs | exec ÷ floor | above floor (µs) | ratio to INCR | ÷ redis-cell |"
            .to_owned(),
        "|---|---|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for report in reports {
        let cell = report.row(REDIS_CELL_LABEL);
        let usec = |index: usize| -> f64 {
            let usecs: Vec<f64> = report
                .samples_of(index, 16)
                .iter()
                .map(|s| s.usec_per_call)
                .collect();
            median(&usecs)
        };
        let floor = usec(FLOOR_ROW);
        for (index, workload) in report.workloads.iter().enumerate() {
            let random_keys = workload.baseline == report.workloads[FLOOR_ROW].baseline;
            let reference = index == FLOOR_ROW || Some(index) == cell;
            let measured = !report.samples_of(index, 16).is_empty();
            if !measured || !random_keys || !(workload.counter.is_some() || reference) {
                continue;
            }
            let exec = usec(index);
            let to_cell = match cell {
                Some(cell) if index != cell => {
                    format!("{:.2}×", report.median_ratio_to(index, cell, 16))
                }
                _ => "–".to_owned(),
            };
            lines.push(format!(
                "| {} | {} | {exec:.2} | {floor:.2} | {:.2}× | {:+.2} | {:.2}× | {to_cell} |",
                report.server,
                workload.label,
                median(&report.exec_to_floor(index, 16)),
                exec - floor,
                median(&report.ratios(index, 16)),
            ));
        }
    }
    lines
}

/// The bytes-per-key table.
pub fn memory_table(keys: usize, rows: &[Vec<MemoryRow>]) -> Vec<String> {
    let mut lines = vec![
        format!("\n### Bytes per key ({keys} keys of each kind; used_memory delta ÷ keys)\n"),
        "| server | kind | written with | bytes per key | MEMORY USAGE of one key |".to_owned(),
        "|---|---|---|---:|---:|".to_owned(),
    ];
    for row in rows.iter().flatten() {
        lines.push(format!(
            "| {} | {} | `{}` | {:.1} | {} |",
            row.server, row.kind, row.command, row.bytes_per_key, row.memory_usage
        ));
    }
    lines
}

/// The propagated-bytes table.
pub fn propagation_table(rows: &[Vec<PropagationRow>]) -> Vec<String> {
    let mut lines = vec![
        format!(
            "\n### Propagated bytes per call ({PROPAGATION_CALLS} calls of each kind; AOF size and replication offset deltas ÷ calls)\n"
        ),
        "| server | command | outcome | AOF bytes per call | replication bytes per call |"
            .to_owned(),
        "|---|---|---|---:|---:|".to_owned(),
    ];
    for row in rows.iter().flatten() {
        lines.push(format!(
            "| {} | `{}` | {} | {:.1} | {:.1} |",
            row.server, row.command, row.outcome, row.aof_bytes, row.repl_bytes
        ));
    }
    lines
}

/// Where the bench writes its results: between these markers of `docs/benchmarks.md`,
/// and the chart next to it.
const DOCS_START: &str = "<!-- server-bench:start -->";
const DOCS_END: &str = "<!-- server-bench:end -->";
const CHART_FILE: &str = "docs/benchmarks-throughput.svg";

/// Replaces the results section of `docs/benchmarks.md` and writes the chart.
pub fn write_docs(report: &str, svg: &str) {
    let chart_path = repo_root().join(CHART_FILE);
    std::fs::write(&chart_path, svg)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", chart_path.display()));
    eprintln!("wrote {}", chart_path.display());
    let docs_path = repo_root().join("docs/benchmarks.md");
    let Ok(docs) = std::fs::read_to_string(&docs_path) else {
        eprintln!("no {}: results printed only", docs_path.display());
        return;
    };
    let (Some(start), Some(end)) = (docs.find(DOCS_START), docs.find(DOCS_END)) else {
        eprintln!(
            "{} has no {DOCS_START} … {DOCS_END} section: results printed only",
            docs_path.display()
        );
        return;
    };
    if end < start {
        eprintln!(
            "{}: markers out of order: results printed only",
            docs_path.display()
        );
        return;
    }
    let updated = format!(
        "{}{DOCS_START}\n\n{report}\n{}",
        &docs[..start],
        &docs[end..]
    );
    std::fs::write(&docs_path, updated)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", docs_path.display()));
    eprintln!("wrote the results into {}", docs_path.display());
}

// ---------------------------------------------------------------------------------------
// The chart

/// A horizontal bar chart (SVG) of the pipeline-16 ratios to INCR: one group of bars per
/// charted command, one bar per server; the floor module's row comes first, with a
/// dashed line at its ratio on each server.
pub fn chart(reports: &[ThroughputReport]) -> String {
    const COLORS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"];
    let Some(first) = reports.first() else {
        return String::new();
    };
    let commands: Vec<(usize, &str)> = first
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| w.charted)
        .map(|(index, w)| (index, w.label.as_str()))
        .collect();
    let (label_width, bar_height, group_gap, axis_width) = (330.0, 11.0, 10.0, 520.0);
    let group_height = bar_height * reports.len() as f64 + group_gap;
    let top = 60.0;
    let height = top + group_height * commands.len() as f64 + 50.0;
    let width = label_width + axis_width + 40.0;
    let max_ratio = 1.2_f64;
    let x = |ratio: f64| label_width + ratio.min(max_ratio) / max_ratio * axis_width;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">Throughput at pipeline 16, ratio to INCR on random keys (median over rounds)</text>\n"
    );
    for (index, report) in reports.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let lx = 10.0 + 170.0 * index as f64;
        svg.push_str(&format!(
            "<rect x=\"{lx:.0}\" y=\"30\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.0}\" y=\"39\">{}</text>\n",
            lx + 14.0,
            xml(&report.server)
        ));
    }
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let tx = x(tick);
        svg.push_str(&format!(
            "<line x1=\"{tx:.1}\" y1=\"{:.0}\" x2=\"{tx:.1}\" y2=\"{:.0}\" stroke=\"#ccc\"/><text x=\"{tx:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{tick:.2}×</text>\n",
            top - 6.0,
            height - 40.0,
            height - 26.0
        ));
    }
    for (index, report) in reports.iter().enumerate() {
        let floor = median(&report.ratios(FLOOR_ROW, 16));
        if !floor.is_finite() {
            continue;
        }
        let fx = x(floor);
        svg.push_str(&format!(
            "<line x1=\"{fx:.1}\" y1=\"{:.0}\" x2=\"{fx:.1}\" y2=\"{:.0}\" stroke=\"{}\" stroke-dasharray=\"4,3\"/>\n",
            top - 6.0,
            height - 40.0,
            COLORS[index % COLORS.len()]
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{label_width:.0}\" y=\"{:.0}\">dashed: the floor module (module-API minimum) on each server</text>\n",
        height - 12.0
    ));
    for (row, (workload, label)) in commands.iter().enumerate() {
        let gy = top + group_height * row as f64;
        svg.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            label_width - 6.0,
            gy + bar_height * reports.len() as f64 / 2.0 + 4.0,
            xml(label)
        ));
        for (index, report) in reports.iter().enumerate() {
            let ratio = median(&report.ratios(*workload, 16));
            if !ratio.is_finite() {
                continue;
            }
            let y = gy + bar_height * index as f64;
            svg.push_str(&format!(
                "<rect x=\"{label_width:.0}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{ratio:.2}</text>\n",
                x(ratio) - label_width,
                bar_height - 1.0,
                COLORS[index % COLORS.len()],
                x(ratio) + 3.0,
                y + bar_height - 2.5
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Text escaped for SVG.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
