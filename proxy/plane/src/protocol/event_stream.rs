//! Reading the events of a server-sent event stream as its chunks arrive.

use bytes::{Bytes, BytesMut};

/// Accumulates chunks and yields each complete event's data. Events without data
/// (priming events, keep-alives) are skipped.
///
/// An event that arrived whole in one chunk, with one `data` line (what servers send),
/// is handed out as a slice of that chunk: nothing is copied or allocated for it. Only
/// an event split across chunks is gathered in a buffer, and only data in several lines
/// is joined into a new one.
#[derive(Default)]
pub(crate) struct EventReader {
    /// The unread rest of the last chunk, while nothing is gathered in `partial`.
    whole: Bytes,
    /// An event begun in an earlier chunk, gathered until it is complete.
    partial: BytesMut,
}

impl EventReader {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if self.whole.is_empty() && self.partial.is_empty() {
            self.whole = chunk;
            return;
        }
        if !self.whole.is_empty() {
            let rest = std::mem::take(&mut self.whole);
            self.partial.extend_from_slice(&rest);
        }
        self.partial.extend_from_slice(&chunk);
    }

    /// The data of the next complete event that carries any, if one has arrived. It is
    /// the bytes the server sent: read it as text with [`text`].
    pub(crate) fn next_data(&mut self) -> Option<Bytes> {
        loop {
            let event = if self.partial.is_empty() {
                let (end, skip) = find_event_end(&self.whole)?;
                let event = self.whole.split_to(end + skip);
                if self.whole.is_empty() {
                    // Holds nothing more of the chunk (whose buffer is then free sooner).
                    self.whole = Bytes::new();
                }
                event.slice(..end)
            } else {
                let (end, skip) = find_event_end(&self.partial)?;
                let mut event = self.partial.split_to(end + skip);
                event.truncate(end);
                event.freeze()
            };
            if let Some(data) = data_of(&event)
                && !blank(&data)
            {
                return Some(data);
            }
        }
    }
}

/// An event's data as text (invalid UTF-8 replaced; borrowed when valid, which is checked
/// the fast way first).
pub(crate) fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(data) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(data),
    }
}

/// Whether data is only whitespace (read as text only when it starts with a non-ASCII
/// character: a message starts with `{`).
fn blank(data: &[u8]) -> bool {
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(b) if b.is_ascii() => false,
        Some(_) => text(data).trim().is_empty(),
    }
}

/// The data of one event (its lines joined by `\n`), `None` without a `data` line: a
/// slice of the event when it has one `data` line.
fn data_of(event: &Bytes) -> Option<Bytes> {
    let mut first: Option<(usize, usize)> = None;
    let mut joined: Option<Vec<u8>> = None;
    let mut start = 0;
    while start <= event.len() {
        let end = event[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(event.len(), |i| start + i);
        let mut line = &event[start..end];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            // `value` ends the line: its place in the event.
            let from = start + line.len() - value.len();
            let range = (from, start + line.len());
            match (&first, &mut joined) {
                (None, _) => first = Some(range),
                (Some((a, b)), None) => {
                    let mut all = Vec::with_capacity(b - a + 1 + value.len());
                    all.extend_from_slice(&event[*a..*b]);
                    all.push(b'\n');
                    all.extend_from_slice(value);
                    joined = Some(all);
                }
                (Some(_), Some(all)) => {
                    all.push(b'\n');
                    all.extend_from_slice(value);
                }
            }
        }
        if end == event.len() {
            break;
        }
        start = end + 1;
    }
    match (first, joined) {
        (_, Some(all)) => Some(Bytes::from(all)),
        (Some((a, b)), None) => Some(event.slice(a..b)),
        (None, None) => None,
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
        reader.push(Bytes::from_static(
            b"id: 0\nretry: 3000\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",",
        ));
        assert!(
            reader.next_data().is_none(),
            "the priming event has no data"
        );
        reader.push(Bytes::from_static(
            b"\"id\":1,\"result\":{}}\r\n\r\ndata: {\"a\"",
        ));
        assert_eq!(
            reader.next_data().as_deref(),
            Some(&br#"{"jsonrpc":"2.0","id":1,"result":{}}"#[..])
        );
        assert!(reader.next_data().is_none(), "the next event is incomplete");
        reader.push(Bytes::from_static(b":1}\n\n"));
        assert_eq!(reader.next_data().as_deref(), Some(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut reader = EventReader::default();
        reader.push(Bytes::from_static(b"data: {\"a\":\ndata: 1}\n\n"));
        assert_eq!(reader.next_data().as_deref(), Some(&b"{\"a\":\n1}"[..]));
    }

    #[test]
    fn an_event_that_arrived_whole_is_read_without_allocating() {
        let chunk: &'static [u8] =
            b"id: 7\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        let allocations = crate::allocations(|| {
            let mut reader = EventReader::default();
            reader.push(Bytes::from_static(chunk));
            let data = reader.next_data();
            assert!(data.is_some_and(|d| d.len() == 36));
        });
        assert_eq!(allocations, 0, "allocations to read one whole event");
    }

    #[test]
    fn data_of_whitespace_only_is_skipped_as_text_would_be() {
        let mut reader = EventReader::default();
        reader.push(Bytes::from(
            "data: \t \n\ndata: \u{a0}\u{2003}\n\ndata: \u{a0}x\n\n",
        ));
        assert_eq!(reader.next_data().as_deref(), Some("\u{a0}x".as_bytes()));
    }
}
