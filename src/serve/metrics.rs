//! Counters for `/metrics`, written in the Prometheus text format (0.0.4)
//! by hand: requests by route and status, a latency histogram per route,
//! MAC and decryption failures, key reloads, the data-key cache, and keys
//! per tenant (read from the generation in service at scrape time).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::keys::Generation;

/// The routes requests are counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/decrypt`.
    Decrypt,
    /// `POST /v1/render`.
    Render,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// Anything else (404s).
    Other,
}

const ROUTES: [Route; 6] = [
    Route::Decrypt,
    Route::Render,
    Route::Healthz,
    Route::Readyz,
    Route::Metrics,
    Route::Other,
];

impl Route {
    /// The route of a request path.
    pub fn of(path: &str) -> Route {
        match path {
            "/v1/decrypt" => Route::Decrypt,
            "/v1/render" => Route::Render,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            _ => Route::Other,
        }
    }

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Route::Decrypt => "decrypt",
            Route::Render => "render",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        // Buckets are stored non-cumulative and summed when written.
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Status codes are counted in a flat table (100..=599).
const STATUS_MIN: usize = 100;
const STATUS_SLOTS: usize = 500;

/// The sidecar's counters.
pub struct Metrics {
    requests: Vec<[AtomicU64; STATUS_SLOTS]>,
    latency: Vec<Histogram>,
    /// Files whose MAC did not match.
    pub mac_failures: AtomicU64,
    /// Requests answered 422 (any decryption failure, MAC ones included).
    pub decrypt_failures: AtomicU64,
    /// Successful key reloads (the first load included).
    pub reloads_ok: AtomicU64,
    /// Key reloads that were rejected (the old keys stayed).
    pub reloads_failed: AtomicU64,
    /// Data keys found in the cache.
    pub cache_hits: AtomicU64,
    /// Data keys that had to be unwrapped.
    pub cache_misses: AtomicU64,
    /// Requests being served.
    pub in_flight: AtomicI64,
    /// Unix time of the last successful reload.
    pub last_reload: AtomicU64,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Metrics {
    /// All zero.
    pub fn new() -> Self {
        Metrics {
            requests: ROUTES
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            latency: ROUTES.iter().map(|_| Histogram::new()).collect(),
            mac_failures: AtomicU64::new(0),
            decrypt_failures: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            last_reload: AtomicU64::new(0),
            started: SystemTime::now(),
        }
    }

    /// Counts one finished request.
    pub fn observe(&self, route: Route, status: u16, took: Duration) {
        let slot = (status as usize).clamp(STATUS_MIN, STATUS_MIN + STATUS_SLOTS - 1) - STATUS_MIN;
        self.requests[route.index()][slot].fetch_add(1, Ordering::Relaxed);
        self.latency[route.index()].observe(took);
    }

    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a successful reload.
    pub fn reloaded(&self) {
        Self::inc(&self.reloads_ok);
        self.last_reload
            .store(unix_secs(SystemTime::now()) as u64, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self, gen: Option<&Generation>, draining: bool, tenant_names: bool) -> String {
        let mut o = String::with_capacity(4096);
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);

        o.push_str("# HELP kustos_requests_total HTTP requests by route and status code.\n# TYPE kustos_requests_total counter\n");
        for r in ROUTES {
            for (i, c) in self.requests[r.index()].iter().enumerate() {
                let n = ld(c);
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "kustos_requests_total{{route=\"{}\",status=\"{}\"}} {n}",
                        r.name(),
                        i + STATUS_MIN
                    );
                }
            }
        }

        o.push_str("# HELP kustos_request_duration_seconds Request latency by route.\n# TYPE kustos_request_duration_seconds histogram\n");
        for r in ROUTES {
            let h = &self.latency[r.index()];
            let count = ld(&h.count);
            if count == 0 && !matches!(r, Route::Decrypt | Route::Render) {
                continue;
            }
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += ld(&h.buckets[i]);
                let _ = writeln!(
                    o,
                    "kustos_request_duration_seconds_bucket{{route=\"{}\",le=\"{b}\"}} {cum}",
                    r.name()
                );
            }
            let _ = writeln!(
                o,
                "kustos_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {count}",
                r.name()
            );
            let _ = writeln!(
                o,
                "kustos_request_duration_seconds_sum{{route=\"{}\"}} {}",
                r.name(),
                ld(&h.sum_ns) as f64 / 1e9
            );
            let _ = writeln!(
                o,
                "kustos_request_duration_seconds_count{{route=\"{}\"}} {count}",
                r.name()
            );
        }

        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        counter(
            &mut o,
            "kustos_mac_failures_total",
            "Documents rejected because their MAC did not match.",
            ld(&self.mac_failures),
        );
        counter(
            &mut o,
            "kustos_decrypt_failures_total",
            "Requests that failed to decrypt (MAC mismatches included).",
            ld(&self.decrypt_failures),
        );
        let _ = write!(
            o,
            "# HELP kustos_key_reloads_total Key folder loads by result (a failure keeps the old keys).\n# TYPE kustos_key_reloads_total counter\nkustos_key_reloads_total{{result=\"success\"}} {}\nkustos_key_reloads_total{{result=\"failure\"}} {}\n",
            ld(&self.reloads_ok),
            ld(&self.reloads_failed)
        );
        let _ = write!(
            o,
            "# HELP kustos_key_last_reload_timestamp_seconds When the keys in service were loaded.\n# TYPE kustos_key_last_reload_timestamp_seconds gauge\nkustos_key_last_reload_timestamp_seconds {}\n",
            ld(&self.last_reload)
        );
        counter(
            &mut o,
            "kustos_datakey_cache_hits_total",
            "Data keys served from the cache.",
            ld(&self.cache_hits),
        );
        counter(
            &mut o,
            "kustos_datakey_cache_misses_total",
            "Data keys that had to be unwrapped.",
            ld(&self.cache_misses),
        );
        let _ = write!(
            o,
            "# HELP kustos_datakey_cache_entries Data keys in the cache.\n# TYPE kustos_datakey_cache_entries gauge\nkustos_datakey_cache_entries {}\n",
            gen.map(|g| g.cache.len()).unwrap_or(0)
        );
        o.push_str("# HELP kustos_keys Identities loaded per tenant (_platform: the top-level keys; _tenants: all tenants, where tenant names are not shown).\n# TYPE kustos_keys gauge\n");
        if let Some(g) = gen {
            let (platform, tenants) = g.rings.split_at(1.min(g.rings.len()));
            for r in platform {
                let _ = writeln!(o, "kustos_keys{{tenant=\"{}\"}} {}", r.name, r.identities);
            }
            if tenant_names {
                for r in tenants {
                    let _ = writeln!(o, "kustos_keys{{tenant=\"{}\"}} {}", r.name, r.identities);
                }
            } else if !tenants.is_empty() {
                let sum: usize = tenants.iter().map(|r| r.identities).sum();
                let _ = writeln!(o, "kustos_keys{{tenant=\"_tenants\"}} {sum}");
            }
        }
        let _ = write!(
            o,
            "# HELP kustos_tenants Tenants with a key folder.\n# TYPE kustos_tenants gauge\nkustos_tenants {}\n",
            gen.map(|g| g.rings.len().saturating_sub(1)).unwrap_or(0)
        );
        let _ = write!(
            o,
            "# HELP kustos_key_generation Number of the key generation in service (0: none).\n# TYPE kustos_key_generation gauge\nkustos_key_generation {}\n",
            gen.map(|g| g.id).unwrap_or(0)
        );
        let ready = gen.is_some() && !draining;
        let _ = write!(
            o,
            "# HELP kustos_ready Whether the sidecar serves requests (keys loaded, not draining).\n# TYPE kustos_ready gauge\nkustos_ready {}\n",
            ready as u8
        );
        let _ = write!(
            o,
            "# HELP kustos_in_flight_requests Requests being served.\n# TYPE kustos_in_flight_requests gauge\nkustos_in_flight_requests {}\n",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = write!(
            o,
            "# HELP process_start_time_seconds Start time of the process since the Unix epoch.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}\n",
            unix_secs(self.started) as u64
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::new();
        m.observe(Route::Decrypt, 200, Duration::from_micros(300));
        m.observe(Route::Decrypt, 422, Duration::from_millis(3));
        m.observe(Route::Healthz, 200, Duration::from_micros(10));
        Metrics::inc(&m.mac_failures);
        let t = m.render(None, false, true);
        assert!(t.contains("kustos_requests_total{route=\"decrypt\",status=\"200\"} 1\n"));
        assert!(t.contains("kustos_requests_total{route=\"decrypt\",status=\"422\"} 1\n"));
        assert!(t.contains(
            "kustos_request_duration_seconds_bucket{route=\"decrypt\",le=\"0.0005\"} 1\n"
        ));
        assert!(t.contains(
            "kustos_request_duration_seconds_bucket{route=\"decrypt\",le=\"0.005\"} 2\n"
        ));
        assert!(
            t.contains("kustos_request_duration_seconds_bucket{route=\"decrypt\",le=\"+Inf\"} 2\n")
        );
        assert!(t.contains("kustos_request_duration_seconds_count{route=\"decrypt\"} 2\n"));
        assert!(t.contains("kustos_mac_failures_total 1\n"));
        assert!(t.contains("kustos_ready 0\n"));
        // Every sample line is `name{labels} value`.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
