//! A console client over the guests' console WebSocket.

use super::*;

/// A console client over WebSocket (`GET /api/v1/{path}` upgraded, authenticated as `c`).
pub struct Console {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    /// Everything received so far.
    pub seen: String,
}

impl Console {
    /// Connects and checks the handshake answered 101.
    pub fn attach(d: &Daemon, c: &Client, path: &str) -> Console {
        use tungstenite::client::IntoClientRequest;
        let url = format!("{}/api/v1/{path}", d.endpoint.replacen("http", "ws", 1));
        let mut req = url.as_str().into_client_request().expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", c.token.clone().expect("token"))
                .parse()
                .expect("header"),
        );
        let (ws, resp) = tungstenite::connect(req).expect("websocket handshake");
        assert_eq!(resp.status(), 101);
        Console {
            ws,
            seen: String::new(),
        }
    }

    /// Reads output frames until `want` has been seen; panics if the socket closes first.
    pub fn read_until(&mut self, want: &str) {
        while !self.seen.contains(want) {
            match self.ws.read().expect("console frame") {
                tungstenite::Message::Binary(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                tungstenite::Message::Close(_) => panic!("closed before {want:?}: {}", self.seen),
                _ => {}
            }
        }
    }

    pub fn send(&mut self, m: tungstenite::Message) {
        self.ws.send(m).expect("send");
    }

    /// Waits for the server to close the socket.
    pub fn wait_closed(&mut self) {
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
