//! The two protocol eras of MCP, and which one a request belongs to.
//!
//! Revisions up to 2025-11-25 open a session with `initialize`; 2026-07-28 is stateless
//! (`server/discover`, per-request metadata, multi round-trip requests).

use rmcp::RoleServer;
use rmcp::model::RequestMetaObject;
use rmcp::service::RequestContext;

/// The protocol era of a client (and of the lane that serves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Era {
    /// 2024-11-05 … 2025-11-25: sessions and `initialize`.
    Legacy,
    /// 2026-07-28 and later: stateless.
    Modern,
}

impl Era {
    pub(crate) fn of(version: &rmcp::model::ProtocolVersion) -> Self {
        if *version >= rmcp::model::ProtocolVersion::V_2026_07_28 {
            Self::Modern
        } else {
            Self::Legacy
        }
    }

    /// The era of a revision named as text (revision names sort by date).
    pub(crate) fn of_str(version: &str) -> Self {
        if version >= "2026-07-28" {
            Self::Modern
        } else {
            Self::Legacy
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Legacy => 0,
            Self::Modern => 1,
        }
    }

    pub(crate) fn other(self) -> Self {
        match self {
            Self::Legacy => Self::Modern,
            Self::Modern => Self::Legacy,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Legacy => "2025-11-25 and earlier",
            Self::Modern => "2026-07-28",
        }
    }
}

/// The protocol era of the client behind a request: the version in its `_meta`
/// (2026-07-28), else the one its session negotiated.
pub(crate) fn era_of(context: &RequestContext<RoleServer>) -> Era {
    context
        .meta
        .protocol_version()
        .or_else(|| {
            context
                .peer
                .peer_info()
                .map(|info| info.protocol_version.clone())
        })
        .map_or(Era::Legacy, |v| Era::of(&v))
}

/// The `_meta` to pass upstream: the client's own entries (a trace context, the log
/// level it asked for, …), without its progress token (the gateway maps its own) and
/// its identity (the gateway is the upstream's client). To a 2026-07-28 lane the
/// client's declared capabilities go along, so the upstream asks only for input the
/// client can give; a legacy lane has no use for per-request protocol metadata.
pub(crate) fn upstream_meta(
    context: &RequestContext<RoleServer>,
    lane: Era,
) -> Option<RequestMetaObject> {
    let mut meta = context.meta.clone();
    let map = &mut meta.0.0;
    map.remove("progressToken");
    map.remove("io.modelcontextprotocol/clientInfo");
    match lane {
        Era::Legacy => map.retain(|key, _| !key.starts_with("io.modelcontextprotocol/")),
        Era::Modern => {
            if !map.contains_key("io.modelcontextprotocol/clientCapabilities") {
                // An older client declared its capabilities at initialize.
                if let Some(info) = context.peer.peer_info() {
                    meta.set_client_capabilities(info.capabilities.clone());
                }
            }
        }
    }
    (!meta.0.0.is_empty()).then_some(meta)
}
