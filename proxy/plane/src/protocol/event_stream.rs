//! Reading the events of a server-sent event stream as its chunks arrive.

/// Accumulates chunks and yields each complete event's data. Events without data
/// (priming events, keep-alives) are skipped.
#[derive(Default)]
pub(crate) struct EventReader {
    buffer: Vec<u8>,
}

impl EventReader {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The data of the next complete event that carries any, if one has arrived.
    pub(crate) fn next_data(&mut self) -> Option<String> {
        loop {
            let (end, skip) = find_event_end(&self.buffer)?;
            let event: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
            let text = String::from_utf8_lossy(&event);
            let mut data = String::new();
            for line in text.lines().map(|l| l.trim_end_matches('\r')) {
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
            return Some(data);
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
            reader.next_data().is_none(),
            "the priming event has no data"
        );
        reader.push(b"\"id\":1,\"result\":{}}\r\n\r\ndata: {\"a\"");
        assert_eq!(
            reader.next_data().as_deref(),
            Some(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        );
        assert!(reader.next_data().is_none(), "the next event is incomplete");
        reader.push(b":1}\n\n");
        assert_eq!(reader.next_data().as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut reader = EventReader::default();
        reader.push(b"data: {\"a\":\ndata: 1}\n\n");
        assert_eq!(reader.next_data().as_deref(), Some("{\"a\":\n1}"));
    }
}
