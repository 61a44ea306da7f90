//! SCRAM-SHA-256 (RFC 5802, RFC 7677), the password authentication Postgres clients
//! speak: the server stores only a salted verifier, and neither side sends the
//! password.
//!
//! ```text
//!   client                                   server
//!   client-first  n,,n=user,r=<cnonce>  ───▶
//!                                       ◀─── server-first  r=<cnonce+snonce>,s=<salt>,i=4096
//!   client-final  c=biws,r=..,p=<proof> ───▶ check: H(proof ⊕ HMAC(StoredKey, auth)) = StoredKey
//!                                       ◀─── server-final  v=HMAC(ServerKey, auth)
//! ```
//!
//! The verifier is stored in Postgres' format:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
//!
//! HAZARD: passwords are not SASLprep-normalized; a non-ASCII password set here
//! and typed differently normalized by a client will not match.
//!
//! The primitives (PBKDF2, HMAC, SHA-256) are ring's; this file only composes them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

/// PBKDF2 iterations for new verifiers (Postgres' default).
pub const ITERATIONS: u32 = 4096;

/// A stored password verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Why authentication failed. Messages stay vague for the client.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("password authentication failed")]
    Failed,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&k, data).as_ref().to_vec()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// Compares two keys without an early exit, so the time taken does not tell how
/// many leading bytes matched. (ring's own comparison is deprecated for outside use;
/// this is the whole of it.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` random bytes from the system's generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system generator does not fail on Linux; if it did, the zeroes would only
    // weaken one salt or nonce, and authentication would still check the proof.
    let _ = ring::rand::SystemRandom::new().fill(&mut buf);
    buf
}

impl Verifier {
    /// A verifier of `password` with a fresh salt.
    pub fn new(password: &str) -> Verifier {
        Verifier::with_salt(password, &random_bytes(16), ITERATIONS)
    }

    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let mut salted = [0u8; 32];
        let iters =
            std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iters,
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }

    pub fn decode(s: &str) -> Option<Verifier> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Verifier {
            iterations: iterations.parse().ok()?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?,
            server_key: B64.decode(server).ok()?,
        })
    }
}

/// The server's side of one exchange, after the client's first message.
pub struct Exchange {
    verifier: Verifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

fn attribute(msg: &str, key: char) -> Option<&str> {
    msg.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(key) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

impl Exchange {
    /// Reads the client-first message; returns the exchange and the server-first
    /// message. `server_nonce` is fresh randomness (printable, no commas).
    pub fn start(
        verifier: Verifier,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(Exchange, String), AuthError> {
        let msg =
            std::str::from_utf8(client_first).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        // GS2 header: "n,," (no channel binding) or "y,," (client could, server did
        // not offer); "p=" (binding required) is refused.
        let bare = if let Some(rest) = msg.strip_prefix("n,,").or_else(|| msg.strip_prefix("y,,")) {
            rest
        } else {
            return Err(AuthError::Malformed("channel binding is not supported"));
        };
        let client_nonce = attribute(bare, 'r').ok_or(AuthError::Malformed("no nonce"))?;
        if client_nonce.is_empty() {
            return Err(AuthError::Malformed("empty nonce"));
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            Exchange {
                verifier,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client-final message's proof; returns the server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<String, AuthError> {
        let msg =
            std::str::from_utf8(client_final).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(AuthError::Malformed("no proof"))?;
        if attribute(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Err(AuthError::Failed);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| AuthError::Malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(AuthError::Failed);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !constant_time_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(AuthError::Failed);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, as RFC 5802 describes it, to drive the server.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> String {
        let nonce = attribute(server_first, 'r').unwrap();
        let salt = B64.decode(attribute(server_first, 's').unwrap()).unwrap();
        let iters: u32 = attribute(server_first, 'i').unwrap().parse().unwrap();
        let v = Verifier::with_salt(password, &salt, iters);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iters).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let sig = hmac_sha256(&v.stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn right_password_authenticates_and_wrong_one_fails() {
        let v = Verifier::new("s3cret");
        assert_eq!(Verifier::decode(&v.encode()), Some(v.clone()));
        for (password, ok) in [("s3cret", true), ("wrong", false)] {
            let (ex, server_first) = Exchange::start(v.clone(), b"n,,n=,r=abc", "xyz").unwrap();
            let fin = client_final(password, "n=,r=abc", &server_first);
            assert_eq!(ex.finish(fin.as_bytes()).is_ok(), ok, "{password}");
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        let v = Verifier::new("p");
        assert!(Exchange::start(v.clone(), b"p=tls-unique,,n=,r=a", "b").is_err());
        assert!(Exchange::start(v.clone(), b"n,,n=", "b").is_err());
        assert!(Exchange::start(v.clone(), &[0xff], "b").is_err());
        let (ex, _) = Exchange::start(v, b"n,,n=,r=a", "b").unwrap();
        assert!(ex.finish(b"c=biws,r=ab").is_err());
    }
}
