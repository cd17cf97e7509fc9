use http_body_util::Full;

use super::*;

#[test]
fn forwarded_request_ids_are_counted_in_decimal() {
    let direct = Direct::default();
    assert_eq!(direct.next_id(), "warrant-0");
    assert_eq!(direct.next_id(), "warrant-1");
    direct.next_id.store(u64::MAX, Ordering::Relaxed);
    assert_eq!(direct.next_id(), format!("warrant-{}", u64::MAX));
}

#[tokio::test]
async fn a_stream_that_ends_after_its_answer_leaves_its_connection_to_the_next_call() {
    use std::io::{Read as _, Write as _};
    // An upstream that answers in an event stream and ends it only when told.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let (end, ended) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).expect("request");
        let event = "event: message\ndata: {}\n\n";
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        write!(socket, "{head}{:x}\r\n{event}\r\n", event.len()).expect("event");
        let _ = ended.recv();
        socket.write_all(b"0\r\n\r\n").expect("end");
        // Kept open: the connection may carry the next call.
        std::thread::sleep(std::time::Duration::from_millis(500));
    });
    let url = url::Url::parse(&format!("http://{address}/mcp")).expect("url");
    let target = Arc::new(
        Target::new(
            &url,
            http::HeaderMap::new(),
            std::time::Duration::from_secs(5),
            4,
        )
        .expect("target"),
    );
    let mut conn = target.connections.checkout().await.expect("a connection");
    let mut request = http::Request::new(Full::new(Bytes::from_static(b"{}")));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = target.uri.clone();
    request
        .headers_mut()
        .insert(http::header::HOST, target.host.clone());
    let response = conn.send(request).await.expect("a response");
    let mut body = response.into_body();
    assert!(conn.frame(&mut body).await.expect("the event").is_some());
    let tasks = tokio::runtime::Handle::current().metrics();
    let before = tasks.num_alive_tasks();
    check_in_after_stream(target.clone(), conn, body);
    assert_eq!(
        tasks.num_alive_tasks(),
        before,
        "no task of its own waits for the end of the stream"
    );
    end.send(()).expect("told");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let again = target.connections.checkout().await.expect("a connection");
    assert_eq!(
        target.connections.opened(),
        1,
        "the next call takes the connection whose stream has ended by then"
    );
    drop(again);
    server.join().expect("server");
}
