//! Reading Prometheus text: a sample's value, a sum over label sets, and histogram
//! quantiles between two readings.

/// The value of an unlabelled-or-any-labels metric sample in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of the samples of metric `name` in Prometheus text whose labels include all of
/// `labels` (`[("peer", "media-oslo-1")]`); 0 when there is none.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The buckets of histogram `name` in Prometheus text: (upper bound, cumulative count),
/// by bound, summed over label sets.
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = Vec::new();
    for l in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = l.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let Some(n) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        match out.iter_mut().find(|(b, _)| *b == bound) {
            Some(e) => e.1 += n,
            None => out.push((bound, n)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile (0..1) of the observations between two readings of a histogram's
/// buckets, interpolated linearly inside its bucket (as Prometheus does); None if
/// nothing was observed.
pub fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(b, n)| {
            let was = before.iter().find(|(x, _)| x == b).map_or(0.0, |x| x.1);
            (*b, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let want = q * total;
    let mut lower = (0.0, 0.0);
    for (bound, count) in delta {
        if count >= want {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let inside = (count - lower.1).max(1e-9);
            return Some(lower.0 + (bound - lower.0) * (want - lower.1) / inside);
        }
        lower = (bound, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_come_from_the_buckets_filled_between_two_readings() {
        let text = |a: u32, b: u32, c: u32| {
            format!(
                "# TYPE h histogram\n\
                 h_bucket{{node=\"x\",le=\"0.001\"}} {a}\n\
                 h_bucket{{node=\"x\",le=\"0.002\"}} {b}\n\
                 h_bucket{{node=\"x\",le=\"+Inf\"}} {c}\n\
                 h_sum{{node=\"x\"}} 1\nh_count{{node=\"x\"}} {c}\n"
            )
        };
        let before = histogram_buckets(&text(10, 10, 10), "h");
        assert_eq!(
            before,
            vec![(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)]
        );
        // 100 new observations: 50 below 1 ms, 50 between 1 and 2 ms.
        let after = histogram_buckets(&text(60, 110, 110), "h");
        let p50 = histogram_quantile(&before, &after, 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p99 = histogram_quantile(&before, &after, 0.99).unwrap();
        assert!((p99 - 0.001_98).abs() < 1e-9, "{p99}");
        assert_eq!(histogram_quantile(&after, &after, 0.5), None);
        assert_eq!(metric_sum(&text(1, 2, 3), "h_count", &[("node", "x")]), 3.0);
    }
}
