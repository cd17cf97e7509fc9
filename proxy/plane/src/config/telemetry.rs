//! `[telemetry]`: traces of the per-call pipeline sent to an OpenTelemetry collector
//! over OTLP/HTTP (protobuf). Off unless an endpoint is given.

use serde::{Deserialize, Serialize};

use super::report::Problem;

/// `[telemetry]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to its
    /// `/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the spans (`warrant`).
    pub service_name: Option<String>,
}

/// The checked `[telemetry]` section.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// Where spans go (`…/v1/traces`); `None`: no traces.
    pub traces_url: Option<url::Url>,
    pub service_name: String,
}

pub(super) fn validate_telemetry(
    raw: RawTelemetry,
    problems: &mut Vec<Problem>,
) -> TelemetryConfig {
    let service_name = raw.service_name.unwrap_or_else(|| "warrant".into());
    if service_name.is_empty() || service_name.len() > 100 {
        problems.push(Problem::new(
            "telemetry.service_name",
            "must be 1 to 100 characters",
        ));
    }
    let traces_url = raw
        .otlp_endpoint
        .and_then(|text| match url::Url::parse(&text) {
            Ok(mut url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
                url.set_path(&path);
                Some(url)
            }
            _ => {
                problems.push(Problem::new(
                    "telemetry.otlp_endpoint",
                    format!("{text:?} is not an http(s) URL like http://collector:4318"),
                ));
                None
            }
        });
    TelemetryConfig {
        traces_url,
        service_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_a_base_url_and_spans_go_to_its_traces_path() {
        let mut problems = Vec::new();
        let config = validate_telemetry(
            RawTelemetry {
                otlp_endpoint: Some("http://127.0.0.1:4318/".into()),
                service_name: None,
            },
            &mut problems,
        );
        assert!(problems.is_empty());
        assert_eq!(
            config.traces_url.map(String::from).as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(config.service_name, "warrant");
        let off = validate_telemetry(RawTelemetry::default(), &mut problems);
        assert!(off.traces_url.is_none());
        validate_telemetry(
            RawTelemetry {
                otlp_endpoint: Some("collector:4318".into()),
                service_name: Some(String::new()),
            },
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
