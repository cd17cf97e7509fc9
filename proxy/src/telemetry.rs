//! Logs and traces. Logs go to standard error, filtered by `RUST_LOG`. When `[telemetry]`
//! names a collector, the spans of the per-call pipeline (target `warrant::call`: the
//! call, and its stages decide, record, forward) also go there over OTLP/HTTP, in
//! batches from a thread of their own; nothing else is sent.

use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::TelemetryConfig;

/// How long sending one batch of spans may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Traces being sent; dropping it sends what is left and stops.
pub struct Traces(SdkTracerProvider);

impl Drop for Traces {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("warning: the last traces could not be sent: {e}");
        }
    }
}

/// Sets up logging, and traces when `telemetry` names a collector (then keep what it
/// returns for as long as traces should go).
pub fn init(telemetry: Option<&TelemetryConfig>) -> anyhow::Result<Option<Traces>> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let (traces, provider) = match telemetry.and_then(|t| t.traces_url.as_ref().map(|url| (t, url)))
    {
        Some((telemetry, url)) => {
            // The exporter's HTTPS client needs the process's rustls provider, as every
            // other client does (`app::start` installs the same one).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url.as_str())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .context("cannot set up the OTLP exporter of [telemetry]")?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(telemetry.service_name.clone())
                        .build(),
                )
                .build();
            let layer = tracing_opentelemetry::layer::<Registry>()
                .with_tracer(provider.tracer("warrant"))
                .with_filter(Targets::new().with_target("warrant::call", tracing::Level::DEBUG));
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(traces)
        .with(logs)
        .try_init();
    Ok(provider.map(Traces))
}
