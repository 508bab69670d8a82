//! The end of a refused upload: the answer goes out at once and the rest of the body is read
//! and dropped in the background (nginx's lingering close), so a client that sends its whole
//! body before reading sees the 409 or 507 rather than a broken pipe.

use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// How long a refused upload may go without sending anything before it is cut off.
const LINGER_IDLE: Duration = Duration::from_secs(30);
/// How much of an upload refused before its handler ran (no credential, no privilege, a bad
/// query) is read: such a caller may not even be a user, so it gets no more than this.
const LINGER_UNVETTED: u64 = 64 << 20;

/// Who an upload was refused to: how much of its body is worth reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Before the handler: up to [`LINGER_UNVETTED`] bytes.
    Unvetted,
    /// By the handler, after authentication and authorization: the whole body.
    ByHandler,
}

/// Lets a refused upload end cleanly. Most HTTP libraries (Python's requests, Go's net/http by
/// default, Rust's ureq, the Terraform provider and the CLI) send the whole body before they
/// read the answer; closing the connection now would show them a broken pipe instead of the
/// 409 or 507 that says why. So the answer goes out at once and the rest of the body is read
/// and dropped in the background while the client keeps sending (it may pause up to
/// [`LINGER_IDLE`]), as nginx's lingering close does. A client that sent
/// `Expect: 100-continue` waits for permission and never sends the body: dropping it is
/// enough.
pub fn discard(body: Incoming, expect_continue: bool, refused: Refused) {
    if expect_continue {
        return;
    }
    let limit = match refused {
        Refused::Unvetted => LINGER_UNVETTED,
        Refused::ByHandler => u64::MAX,
    };
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        while read <= limit {
            match tokio::time::timeout(LINGER_IDLE, body.frame()).await {
                Ok(Some(Ok(f))) => {
                    read += f.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                }
                // Done, broken off, or idle too long.
                _ => return,
            }
        }
    });
}

/// Whether the client waits for `100 Continue` before it sends its body.
pub(super) fn expects_continue(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}
