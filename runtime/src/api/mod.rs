//! The agent's HTTPS API (DESIGN §6): `/status`, `/metrics` and the keyset endpoint that
//! `meshwork keys fetch --from URL --token-file F` uses.
//!
//! * [`server::serve`] runs it: TLS 1.3 only (rustls, ring), HTTP/1.1 (hyper), one task per
//!   connection. The server presents the controller's certificate from the topology keyset.
//! * [`client`] holds what talks to it: [`client::fetch_keyset`] / [`client::fetch_and_import`]
//!   for a controller that joins the topology, [`client::get`] for peers and tests.
//!
//! # Authorisation
//!
//! | route          | credentials                                                           |
//! |----------------|-----------------------------------------------------------------------|
//! | `GET /status`  | a client certificate issued by the topology CA (clientAuth), **or** `Authorization: Bearer <read token>` |
//! | `GET /metrics` | the same                                                              |
//! | `GET /v1/keyset` | `Authorization: MeshworkJoin <proof>` (see below); nothing else     |
//!
//! Client certificates are optional in the handshake, but one that is presented must chain to
//! the topology CA and, when the agent passes the CRL, must not be revoked; otherwise the
//! handshake fails. Bearer tokens are compared in constant time (HMAC of both under a per-process
//! random key, compared with `ring::hmac::verify`), so neither content nor length leaks.
//!
//! # The join proof
//!
//! A controller that joins has no keyset yet, so it cannot authenticate the server: whoever
//! answers on the address may be a man in the middle. The join token is therefore never sent.
//! The client proves it knows the token by an HMAC bound to its own TLS connection:
//!
//! ```text
//! exporter = TLS-Exporter(label = "EXPORTER-meshwork-keyset", context = none, length = 32)
//! proof    = HMAC-SHA256(key = join token, msg = "meshwork keyset v1" || exporter)
//! header   = "Authorization: MeshworkJoin " || lowercase hex(proof)
//! ```
//!
//! Both ends compute the exporter (RFC 8446 §7.5) from their own connection. A relay that
//! terminates the client's TLS and opens its own to the server has two connections with two
//! different exporter values, so a proof it forwards is refused, and a proof is useless on any
//! later connection. The answer (the keyset bundle) is sealed under the same token with
//! Argon2id and XChaCha20-Poly1305 ([`crate::bundle`]), so its confidentiality and integrity do
//! not depend on server authentication either: the client's import fails on anything forged.
//! `Bearer <join token>` is deliberately **not** accepted: it would hand the token to whoever
//! answers.
//!
//! Caveat: an active man in the middle sees a proof for an exporter it knows, so it can test
//! guesses of the token offline at HMAC speed. Join tokens must therefore be random (e.g.
//! `head -c 32 /dev/urandom | base64`), not passwords; [`crate::bundle::MIN_TOKEN_LEN`] only
//! enforces a length. TLS 1.3 is required on both ends, so the exporter is always the TLS 1.3
//! one (TLS 1.2's exporter without extended master secret would be open to a triple handshake).
//!
//! # Failed attempts
//!
//! See [`server`]: a wrong token or proof is answered 401 only after a delay that doubles with
//! each recent failure from the same source address (250 ms, 500 ms, 1 s, ... capped at 5 s),
//! and a source's failures are answered one after another, so parallel connections do not
//! guess faster. Another source's flood does not lock out the right token.

pub mod client;
pub mod lines;
pub mod server;
pub mod server_tls;
mod throttle;
mod tls;

use ring::hmac;

/// The TLS exporter label both ends use for the join proof.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-meshwork-keyset";
/// Bytes taken from the exporter.
pub const EXPORTER_LEN: usize = 32;
/// Prefix of the message the join proof authenticates.
pub const PROOF_CONTEXT: &[u8] = b"meshwork keyset v1";
/// The `Authorization` scheme of the join proof.
pub const JOIN_SCHEME: &str = "MeshworkJoin";
/// The keyset endpoint.
pub const KEYSET_PATH: &str = "/v1/keyset";
/// The only ALPN protocol spoken.
pub const ALPN: &[u8] = b"http/1.1";

/// The join proof for `token` on the connection whose exporter value is `exporter`, as the
/// lowercase hex that follows `MeshworkJoin ` in the `Authorization` header.
pub fn join_proof(token: &[u8], exporter: &[u8; EXPORTER_LEN]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token);
    hex(hmac::sign(&key, &proof_message(exporter)).as_ref())
}

/// Checks a received proof (raw bytes, already hex-decoded) in constant time.
fn verify_join_proof(token: &[u8], exporter: &[u8; EXPORTER_LEN], proof: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token);
    hmac::verify(&key, &proof_message(exporter), proof).is_ok()
}

fn proof_message(exporter: &[u8; EXPORTER_LEN]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(PROOF_CONTEXT.len() + EXPORTER_LEN);
    msg.extend_from_slice(PROOF_CONTEXT);
    msg.extend_from_slice(exporter);
    msg
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Decodes hex (either case); `None` on an odd length or a non-hex character.
fn unhex(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks_exact(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        assert_eq!(unhex("0aFF").unwrap(), [0x0a, 0xff]);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }

    #[test]
    fn proof_is_bound_to_token_and_exporter() {
        let token = b"0123456789abcdef-token";
        let proof = join_proof(token, &[7; 32]);
        assert_eq!(proof.len(), 64);
        let raw = unhex(&proof).unwrap();
        assert!(verify_join_proof(token, &[7; 32], &raw));
        assert!(!verify_join_proof(token, &[8; 32], &raw));
        assert!(!verify_join_proof(b"0123456789abcdef-other", &[7; 32], &raw));
        assert!(!verify_join_proof(token, &[7; 32], &raw[..31]));
    }
}
