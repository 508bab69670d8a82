//! A minimal RFB (VNC) client over the daemon's display WebSocket: handshake without
//! authentication (the API already authenticated the caller), 32-bit true colour, raw
//! encoding, one full-screen update; and a PNG writer to keep what it saw.

use std::io::Write;

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Bytes from the WebSocket, whatever the frame boundaries.
pub struct Rfb {
    ws: Ws,
    buf: Vec<u8>,
}

/// A framebuffer as RGB rows.
pub struct Screen {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Rfb {
    /// Opens `path` (under `/api/v1/`, with any query) with `token` as a Bearer header, or
    /// with none (a console ticket in the query).
    pub fn connect(endpoint: &str, token: Option<&str>, path: &str) -> Rfb {
        Self::try_connect(endpoint, token, path).expect("websocket handshake")
    }

    pub fn try_connect(
        endpoint: &str,
        token: Option<&str>,
        path: &str,
    ) -> Result<Rfb, tungstenite::Error> {
        use tungstenite::client::IntoClientRequest;
        let url = format!("{}/api/v1/{path}", endpoint.replacen("http", "ws", 1));
        let mut req = url.as_str().into_client_request().expect("request");
        if let Some(token) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let (ws, resp) = tungstenite::connect(req)?;
        assert_eq!(resp.status(), 101);
        Ok(Rfb {
            ws,
            buf: Vec::new(),
        })
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            match self.ws.read().expect("display frame") {
                tungstenite::Message::Binary(b) => self.buf.extend_from_slice(&b),
                tungstenite::Message::Close(c) => panic!("display closed: {c:?}"),
                _ => {}
            }
        }
        self.buf.drain(..n).collect()
    }

    fn send(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(tungstenite::Message::binary(bytes))
            .expect("send");
    }

    fn u16_at(b: &[u8], at: usize) -> usize {
        u16::from_be_bytes([b[at], b[at + 1]]) as usize
    }

    /// Handshake, then one non-incremental update of the whole screen.
    pub fn screen(&mut self) -> (String, Screen) {
        let version = self.take(12);
        assert_eq!(&version[..4], b"RFB ", "{version:?}");
        self.send(b"RFB 003.008\n".to_vec());
        let n = self.take(1)[0] as usize;
        assert!(n > 0, "the server refused the connection");
        let types = self.take(n);
        assert!(
            types.contains(&1),
            "no 'None' security type offered: {types:?}"
        );
        self.send(vec![1]);
        assert_eq!(self.take(4), [0, 0, 0, 0], "security result");
        self.send(vec![1]); // ClientInit, shared
        let init = self.take(24);
        let (w, h) = (Self::u16_at(&init, 0), Self::u16_at(&init, 2));
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        let name = String::from_utf8_lossy(&self.take(name_len)).to_string();
        // SetPixelFormat: 32 bpp, depth 24, little-endian, true colour, 8 bits per channel
        // with red at bit 16, green at 8, blue at 0.
        let mut m = vec![0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0];
        m.extend([0, 0, 0]);
        self.send(m);
        // SetEncodings: raw only.
        self.send(vec![2, 0, 0, 1, 0, 0, 0, 0]);
        // FramebufferUpdateRequest, not incremental, the whole screen.
        let mut req = vec![3, 0, 0, 0, 0, 0];
        req.extend((w as u16).to_be_bytes());
        req.extend((h as u16).to_be_bytes());
        self.send(req);
        let mut rgb = vec![0u8; w * h * 3];
        loop {
            match self.take(1)[0] {
                0 => {}
                2 => continue, // Bell: one byte
                t => panic!("unexpected server message {t}"),
            }
            let head = self.take(3);
            let rects = Self::u16_at(&head, 1);
            for _ in 0..rects {
                let r = self.take(12);
                let (x, y, rw, rh) = (
                    Self::u16_at(&r, 0),
                    Self::u16_at(&r, 2),
                    Self::u16_at(&r, 4),
                    Self::u16_at(&r, 6),
                );
                let enc = i32::from_be_bytes([r[8], r[9], r[10], r[11]]);
                assert_eq!(enc, 0, "only raw was asked for");
                let px = self.take(rw * rh * 4);
                for row in 0..rh {
                    for col in 0..rw {
                        let p = &px[(row * rw + col) * 4..][..4];
                        let (yy, xx) = (y + row, x + col);
                        if yy < h && xx < w {
                            let o = (yy * w + xx) * 3;
                            rgb[o..o + 3].copy_from_slice(&[p[2], p[1], p[0]]);
                        }
                    }
                }
            }
            return (
                name,
                Screen {
                    width: w,
                    height: h,
                    rgb,
                },
            );
        }
    }
}

impl Screen {
    /// Distinct colours on screen (1 for a blank one).
    pub fn colours(&self) -> usize {
        let mut seen: Vec<[u8; 3]> = self.rgb.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Writes an 8-bit RGB PNG (stored rows, zlib-compressed).
    pub fn write_png(&self, path: &std::path::Path) {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend((data.len() as u32).to_be_bytes());
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            out.extend(kind);
            out.extend(data);
            out.extend(crc.sum().to_be_bytes());
        }
        let mut raw = Vec::with_capacity((self.width * 3 + 1) * self.height);
        for row in self.rgb.chunks(self.width * 3) {
            raw.push(0);
            raw.extend(row);
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).expect("deflate");
        let idat = z.finish().expect("deflate");
        let mut ihdr = Vec::new();
        ihdr.extend((self.width as u32).to_be_bytes());
        ihdr.extend((self.height as u32).to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &idat);
        chunk(&mut out, b"IEND", &[]);
        std::fs::write(path, out).expect("write png");
    }
}
