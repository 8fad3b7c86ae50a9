//! The table: each figure for us, the peer it is compared with, their
//! ratio and, where one is set, the target and whether this run met it.

use std::fmt::Write as _;

use serde::Serialize;

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// A target on a figure.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Target {
    /// Our figure at most this.
    AtMost(f64),
    /// Our figure at least this.
    AtLeast(f64),
    /// Ours ÷ the peer's at most this.
    RatioAtMost(f64),
    /// Ours ÷ the peer's at least this.
    RatioAtLeast(f64),
}

impl Target {
    fn met(self, ours: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::AtMost(limit) => Some(ours <= limit),
            Target::AtLeast(limit) => Some(ours >= limit),
            Target::RatioAtMost(limit) => ratio.map(|r| r <= limit),
            Target::RatioAtLeast(limit) => ratio.map(|r| r >= limit),
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Target::AtMost(limit) => format!("≤ {} {unit}", number(limit)),
            Target::AtLeast(limit) => format!("≥ {} {unit}", number(limit)),
            Target::RatioAtMost(limit) => format!("ratio ≤ {}", number(limit)),
            Target::RatioAtLeast(limit) => format!("ratio ≥ {}", number(limit)),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) section: &'static str,
    pub(crate) figure: String,
    pub(crate) unit: &'static str,
    pub(crate) better: Better,
    pub(crate) ours: f64,
    /// The system compared with: `etcd` or `nginx`.
    pub(crate) peer_name: &'static str,
    pub(crate) peer: Option<f64>,
    /// Ours ÷ the peer's.
    pub(crate) ratio: Option<f64>,
    pub(crate) targets: Vec<String>,
    /// Whether every target was met; `None` without a target.
    pub(crate) met: Option<bool>,
}

/// The rows of one run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Table {
    pub(crate) rows: Vec<Row>,
}

impl Table {
    /// Adds a figure compared with a peer's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        section: &'static str,
        figure: impl Into<String>,
        unit: &'static str,
        better: Better,
        ours: f64,
        peer_name: &'static str,
        peer: Option<f64>,
        targets: &[Target],
    ) {
        let ratio = peer.filter(|p| *p != 0.0).map(|p| ours / p);
        let verdicts: Vec<Option<bool>> = targets.iter().map(|t| t.met(ours, ratio)).collect();
        let met = if verdicts.is_empty() {
            None
        } else {
            verdicts.iter().try_fold(true, |all, v| v.map(|v| all && v))
        };
        self.rows.push(Row {
            section,
            figure: figure.into(),
            unit,
            better,
            ours,
            peer_name,
            peer,
            ratio,
            targets: targets.iter().map(|t| t.describe(unit)).collect(),
            met,
        });
    }

    /// The table as Markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::from(
            "| section | figure | catga-cluster | peer | ratio | target | met |\n\
             |---|---|---:|---:|---:|---|---|\n",
        );
        for row in &self.rows {
            let peer = row
                .peer
                .map(|p| format!("{} ({})", number(p), row.peer_name))
                .unwrap_or_else(|| "–".into());
            let ratio = row
                .ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "–".into());
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} ({}{}) | {} | {} | {} | {} | {} |",
                row.section,
                row.figure,
                row.unit,
                match row.better {
                    Better::Higher => ", higher is better",
                    Better::Lower => "",
                },
                number(row.ours),
                peer,
                ratio,
                row.targets.join(" and "),
                met
            );
        }
        out
    }
}

/// A figure with as many decimals as it needs.
fn number(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_targets() {
        let mut table = Table::default();
        table.add(
            "s",
            "puts/s",
            "ops/s",
            Better::Higher,
            300.0,
            "etcd",
            Some(100.0),
            &[Target::RatioAtLeast(3.0)],
        );
        table.add(
            "s",
            "fail-over p50",
            "ms",
            Better::Lower,
            60.0,
            "etcd",
            Some(150.0),
            &[Target::AtMost(50.0), Target::RatioAtMost(0.3)],
        );
        table.add(
            "s",
            "no peer",
            "ms",
            Better::Lower,
            1.0,
            "etcd",
            None,
            &[Target::RatioAtMost(1.0)],
        );
        assert_eq!(table.rows[0].ratio, Some(3.0));
        assert_eq!(table.rows[0].met, Some(true));
        assert_eq!(table.rows[1].met, Some(false));
        assert_eq!(table.rows[2].met, None);
        let md = table.markdown();
        assert!(md.contains("| s | puts/s (ops/s, higher is better) | 300 | 100 (etcd) | 3.00 | ratio ≥ 3.00 | yes |"), "{md}");
    }
}
