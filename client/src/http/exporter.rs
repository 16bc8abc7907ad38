//! A ready-made Prometheus exporter for apps without one: a `metrics` recorder that
//! keeps every counter, gauge and histogram recorded through the facade (the app's,
//! the client's and the layer's) and renders them as Prometheus text on `/metrics`.

use axum::body::Body;
use http::{HeaderValue, Response, header};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Upper bounds of the histogram buckets, in the recorded unit (seconds for latencies).
pub(crate) const BUCKETS: [f64; 10] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// A histogram of [`BUCKETS`] (cumulative when rendered), its count and sum.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// The sum, as `f64` bits.
    sum: AtomicU64,
}

impl HistogramFn for Buckets {
    fn record(&self, value: f64) {
        if let Some(i) = BUCKETS.iter().position(|bound| value <= *bound) {
            if let Some(bucket) = self.counts.get(i) {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

impl Buckets {
    /// `name_bucket`, `name_sum` and `name_count` lines for `labels` (`a="b",`).
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.counts) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed));
        let bare = labels.trim_end_matches(',');
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{bare}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{bare}}} {count}");
    }
}

#[derive(Debug)]
enum Series {
    Counter(Arc<AtomicU64>),
    /// `f64` bits.
    Gauge(Arc<AtomicU64>),
    Histogram(Arc<Buckets>),
}

impl Series {
    /// Another handle on the same values.
    fn share(&self) -> Self {
        match self {
            Self::Counter(value) => Self::Counter(Arc::clone(value)),
            Self::Gauge(value) => Self::Gauge(Arc::clone(value)),
            Self::Histogram(buckets) => Self::Histogram(Arc::clone(buckets)),
        }
    }
}

#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    /// By rendered labels (`a="b",`).
    series: BTreeMap<String, Series>,
}

/// A Prometheus exporter (a `metrics` recorder) with a ready-made `/metrics` handler.
///
/// ```
/// use axum::{Router, routing::get};
/// use redlimit::http::PrometheusExporter;
///
/// let exporter = PrometheusExporter::default();
/// // Once, before the first request: every `metrics` series of the process lands here.
/// let _ = exporter.install();
/// let app: Router = Router::new().route("/metrics", get(exporter.handler()));
/// metrics::counter!("orders_total").increment(1);
/// assert!(exporter.render().contains("orders_total 1"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct PrometheusExporter {
    families: Arc<RwLock<BTreeMap<String, Family>>>,
}

impl PrometheusExporter {
    /// Installs this exporter as the process's `metrics` recorder.
    ///
    /// # Errors
    /// Another recorder is installed already.
    pub fn install(&self) -> Result<(), metrics::SetRecorderError<Self>> {
        metrics::set_global_recorder(self.clone())
    }

    /// A handler for `GET /metrics`: [`render`](Self::render) as
    /// `text/plain; version=0.0.4`.
    pub fn handler(
        &self,
    ) -> impl Fn() -> std::future::Ready<Response<Body>> + Clone + Send + Sync + 'static {
        let exporter = self.clone();
        move || {
            let mut response = Response::new(Body::from(exporter.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            std::future::ready(response)
        }
    }

    /// Every series in the Prometheus text format (version 0.0.4), one `# HELP` and
    /// `# TYPE` per name.
    #[must_use]
    pub fn render(&self) -> String {
        let families = self.families.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (name, family) in families.iter() {
            let Some(first) = family.series.values().next() else {
                continue;
            };
            let kind = match first {
                Series::Counter(_) => "counter",
                Series::Gauge(_) => "gauge",
                Series::Histogram(_) => "histogram",
            };
            if let Some(help) = &family.help {
                let _ = writeln!(out, "# HELP {name} {}", help.replace('\n', " "));
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, series) in &family.series {
                let bare = labels.trim_end_matches(',');
                let braced = if bare.is_empty() {
                    String::new()
                } else {
                    format!("{{{bare}}}")
                };
                match series {
                    Series::Counter(value) => {
                        let _ = writeln!(out, "{name}{braced} {}", value.load(Ordering::Relaxed));
                    }
                    Series::Gauge(bits) => {
                        let value = f64::from_bits(bits.load(Ordering::Relaxed));
                        let _ = writeln!(out, "{name}{braced} {value}");
                    }
                    Series::Histogram(buckets) => buckets.render(&mut out, name, labels),
                }
            }
        }
        out
    }

    /// The series of `key`, registered now if new; a fresh unregistered one when the
    /// name is another kind's.
    fn series(&self, key: &Key, make: impl FnOnce() -> Series) -> Series {
        let labels: String = key
            .labels()
            .map(|label| format!("{}=\"{}\",", label.key(), escape(label.value())))
            .collect();
        // Registered already (a `counter!` in a handler runs on every request): a read.
        {
            let families = self.families.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = families
                .get(key.name())
                .and_then(|family| family.series.get(&labels))
            {
                return series.share();
            }
        }
        let made = make();
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(key.name().to_owned()).or_default();
        // One kind per name (Prometheus refuses a family of two): another kind's series
        // under a taken name is not recorded.
        if family
            .series
            .values()
            .next()
            .is_some_and(|first| std::mem::discriminant(first) != std::mem::discriminant(&made))
        {
            return made;
        }
        family.series.entry(labels).or_insert(made).share()
    }

    fn describe(&self, key: &KeyName, description: &SharedString) {
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        families.entry(key.as_str().to_owned()).or_default().help = Some(description.to_string());
    }
}

impl Recorder for PrometheusExporter {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&key, &description);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&key, &description);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&key, &description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.series(key, || Series::Counter(Arc::default())) {
            Series::Counter(value) => Counter::from_arc(value),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.series(key, || Series::Gauge(Arc::default())) {
            Series::Gauge(value) => Gauge::from_arc(value),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.series(key, || Series::Histogram(Arc::default())) {
            Series::Histogram(buckets) => Histogram::from_arc(buckets),
            _ => Histogram::noop(),
        }
    }
}

/// A label value, escaped for the text format.
pub(crate) fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
