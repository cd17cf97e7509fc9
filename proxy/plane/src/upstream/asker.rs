//! Where an upstream's request to the client goes when the client is a 2026-07-28 one
//! with no session to be asked on: into the parked call's next round (see
//! `server::park`), which turns it into the call's `InputRequiredResult`.

// Sampling and roots are deprecated in 2026-07-28, but legacy servers still send them.
#![allow(deprecated)]

use rmcp::ErrorData;
use rmcp::model::{
    ClientCapabilities, ClientResult, CreateMessageResult, ElicitResult, InputRequest,
    ListRootsResult, ServerRequest,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::error::GatewayError;

/// The kind of an upstream's request to the client, and so of the answer it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Elicitation,
    Sampling,
    Roots,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Elicitation => "elicitation",
            Self::Sampling => "sampling",
            Self::Roots => "roots",
        }
    }

    /// Reads the client's answer as the result type the upstream's request expects.
    pub(crate) fn answer(self, value: Value) -> Result<ClientResult, serde_json::Error> {
        Ok(match self {
            Self::Elicitation => {
                ClientResult::ElicitResult(serde_json::from_value::<ElicitResult>(value)?)
            }
            Self::Sampling => {
                ClientResult::CreateMessageResult(Box::new(serde_json::from_value::<
                    CreateMessageResult,
                >(value)?))
            }
            Self::Roots => {
                ClientResult::ListRootsResult(serde_json::from_value::<ListRootsResult>(value)?)
            }
        })
    }
}

/// An upstream's request to the client, waiting for the answer.
pub(crate) struct Ask {
    pub(crate) kind: Kind,
    pub(crate) request: InputRequest,
    pub(crate) answer: oneshot::Sender<ClientResult>,
}

/// Handed, with the call's routing entry, to the upstream side: where an upstream's
/// request goes when the client is a 2026-07-28 one, and what that client declared.
pub(crate) struct Asker {
    capabilities: ClientCapabilities,
    asks: mpsc::UnboundedSender<Ask>,
}

impl Asker {
    pub(crate) fn new(capabilities: ClientCapabilities, asks: mpsc::UnboundedSender<Ask>) -> Self {
        Self { capabilities, asks }
    }

    pub(crate) fn capabilities(&self) -> &ClientCapabilities {
        &self.capabilities
    }

    /// Passes an upstream's request to the parked call and waits for the client's
    /// answer (through the call's next round).
    pub(crate) async fn ask(&self, request: ServerRequest) -> Result<ClientResult, ErrorData> {
        let (kind, request) = match request {
            ServerRequest::ElicitRequest(r) => (Kind::Elicitation, InputRequest::Elicitation(r)),
            ServerRequest::CreateMessageRequest(r) => {
                (Kind::Sampling, InputRequest::CreateMessage(r))
            }
            ServerRequest::ListRootsRequest(r) => (Kind::Roots, InputRequest::ListRoots(r)),
            _ => {
                return Err(GatewayError::NotSupported(
                    "this request cannot be passed to a 2026-07-28 client".into(),
                )
                .into());
            }
        };
        let what = kind.label();
        let (answer, answered) = oneshot::channel();
        self.asks
            .send(Ask {
                kind,
                request,
                answer,
            })
            .map_err(|_| gone(what))?;
        answered.await.map_err(|_| gone(what))
    }
}

/// The error an upstream's request gets when the client will not answer it any more.
pub(crate) fn gone(what: &str) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "the client did not answer the {what} request: the call ended or its input round \
             expired"
        ),
        None,
    )
}
