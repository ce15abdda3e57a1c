//! Signaling without media: a raw WebSocket speaking the protocol, for tests of rooms and
//! classroom controls.

use futures_util::{SinkExt, StreamExt};
use jinke_signaling::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

use super::{TestServer, WAIT, open_ws};

/// A raw signaling socket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next server message; `None` once the socket closed.
pub async fn next_message(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")?
        {
            Ok(Message::Text(t)) => return Some(ServerMessage::from_json(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Sends one text frame.
pub async fn send(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

/// Connects with a fresh token for `who` and sends `join`; returns the socket and the reply.
pub async fn join(
    server: &TestServer,
    lesson: &str,
    who: &str,
    role: &str,
) -> (Ws, Option<ServerMessage>) {
    let token = server.token(lesson, who, role).await;
    let mut ws = open_ws(server.http, &format!("token={token}"))
        .await
        .unwrap();
    send(
        &mut ws,
        ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
        }
        .to_json(),
    )
    .await;
    let reply = next_message(&mut ws).await;
    (ws, reply)
}

/// Reads messages until one matches; panics on a closed socket or after `WAIT`.
pub async fn until(
    ws: &mut Ws,
    what: &str,
    want: impl Fn(&ServerMessage) -> bool,
) -> ServerMessage {
    loop {
        match next_message(ws).await {
            Some(m) if want(&m) => return m,
            Some(_) => continue,
            None => panic!("socket closed while waiting for {what}"),
        }
    }
}
