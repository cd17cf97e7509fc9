//! Reading JSON-RPC messages out of a server-sent event stream as its chunks arrive.

use serde_json::{Map, Value};

/// Accumulates chunks and yields each complete event's JSON message. Events without
/// data (priming events, keep-alives) and data that is not a JSON object are skipped.
#[derive(Default)]
pub(super) struct EventReader {
    buffer: Vec<u8>,
}

impl EventReader {
    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete message, if one has arrived.
    pub(super) fn next_message(&mut self) -> Option<Map<String, Value>> {
        loop {
            let (end, skip) = find_event_end(&self.buffer)?;
            let event: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
            let text = String::from_utf8_lossy(&event);
            let mut data = String::new();
            for line in text.lines() {
                if let Some(value) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if data.trim().is_empty() {
                continue;
            }
            if let Ok(Value::Object(message)) = serde_json::from_str(&data) {
                return Some(message);
            }
            tracing::debug!("skipping an event that is not a JSON-RPC message");
        }
    }
}

/// The end of the first event (its length, and the length of the blank line after it).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buffer.len() {
        if buffer[i] == b'\n' {
            if buffer.get(i + 1) == Some(&b'\n') {
                return Some((i, 2));
            }
            if buffer.get(i + 1) == Some(&b'\r') && buffer.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut reader = EventReader::default();
        reader.push(b"id: 0\nretry: 3000\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",");
        assert!(
            reader.next_message().is_none(),
            "the priming event has no data"
        );
        reader.push(b"\"id\":1,\"result\":{}}\r\n\r\ndata: {\"a\"");
        let message = reader.next_message().expect("a message");
        assert_eq!(message.get("id"), Some(&Value::from(1)));
        assert!(
            reader.next_message().is_none(),
            "the next event is incomplete"
        );
        reader.push(b":1}\n\n");
        assert_eq!(
            reader.next_message().and_then(|m| m.get("a").cloned()),
            Some(Value::from(1))
        );
    }

    #[test]
    fn data_that_is_not_json_is_skipped() {
        let mut reader = EventReader::default();
        reader.push(b"data: ping\n\ndata: {\"ok\":true}\n\n");
        assert_eq!(
            reader.next_message().and_then(|m| m.get("ok").cloned()),
            Some(Value::Bool(true))
        );
    }
}
