//! `[metrics]`: the Prometheus endpoint `/metrics`. On by default and answered only to
//! clients on loopback (as `/readyz` shows reasons only there), and to the networks
//! listed in `allow_from` (the scraper's, say).

use serde::{Deserialize, Serialize};

use super::report::Problem;
use super::value::networks;

/// `[metrics]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    /// Addresses or networks besides loopback whose clients may scrape.
    pub allow_from: Option<Vec<String>>,
}

/// The checked `[metrics]` section.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub allow_from: Vec<ipnet::IpNet>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_from: Vec::new(),
        }
    }
}

impl MetricsConfig {
    /// Whether a client at `ip` may scrape.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback() || self.allow_from.iter().any(|net| net.contains(&ip))
    }
}

pub(super) fn validate_metrics(raw: RawMetrics, problems: &mut Vec<Problem>) -> MetricsConfig {
    MetricsConfig {
        enabled: raw.enabled.unwrap_or(true),
        allow_from: networks(raw.allow_from, "metrics.allow_from", problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_the_listed_networks_may_scrape() {
        let mut problems = Vec::new();
        let config = validate_metrics(
            RawMetrics {
                enabled: None,
                allow_from: Some(vec!["10.1.0.0/16".into(), "fd00::7".into()]),
            },
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(config.enabled);
        for ip in [
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "10.1.2.3",
            "fd00::7",
        ] {
            assert!(config.allows(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["10.2.0.1", "192.168.1.1", "fd00::8", "::ffff:10.2.0.1"] {
            assert!(!config.allows(ip.parse().expect("ip")), "{ip}");
        }
        validate_metrics(
            RawMetrics {
                enabled: Some(false),
                allow_from: Some(vec!["everyone".into()]),
            },
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "metrics.allow_from.0");
    }
}
