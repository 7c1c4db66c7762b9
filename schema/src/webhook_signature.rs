//! Standard Webhooks signatures.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`. `v1` signatures are
//! HMAC-SHA256 with a `whsec_<base64>` secret; `v1a` signatures are ed25519 with a
//! `whsk_<base64 seed>` signing key, whose public half (`whpk_<base64>`) receivers hold.
//! During a secret rotation every valid secret signs, and the header lists all the
//! signatures, space-separated, so receivers holding either secret accept the delivery.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const HMAC_PREFIX: &str = "whsec_";
pub const ED25519_SECRET_PREFIX: &str = "whsk_";
pub const ED25519_PUBLIC_PREFIX: &str = "whpk_";

/// Which scheme an endpoint's deliveries are signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `v1`: HMAC-SHA256, symmetric.
    HmacSha256,
    /// `v1a`: ed25519, asymmetric: receivers need only the public key.
    Ed25519,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::Ed25519 => "ed25519",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hmac-sha256" => Some(Scheme::HmacSha256),
            "ed25519" => Some(Scheme::Ed25519),
            _ => None,
        }
    }

    /// A new random secret for this scheme, in its prefixed text form.
    pub fn generate_secret(self) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        match self {
            Scheme::HmacSha256 => format!("{HMAC_PREFIX}{}", STANDARD.encode(bytes)),
            Scheme::Ed25519 => format!("{ED25519_SECRET_PREFIX}{}", STANDARD.encode(bytes)),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a signing secret must start with {0}")]
    Prefix(&'static str),
    #[error("a signing secret must be base64 after its prefix")]
    Base64,
    #[error("an ed25519 signing key must be 32 bytes")]
    Length,
}

/// One secret, decoded and ready to sign.
#[derive(Clone)]
pub enum SigningSecret {
    Hmac(Vec<u8>),
    Ed25519(Box<SigningKey>),
}

impl SigningSecret {
    /// Parses `whsec_...` (the prefix is optional, as in the reference libraries) or `whsk_...`.
    pub fn parse(scheme: Scheme, text: &str) -> Result<Self, SecretError> {
        match scheme {
            Scheme::HmacSha256 => {
                let encoded = text.strip_prefix(HMAC_PREFIX).unwrap_or(text);
                let key = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
                Ok(SigningSecret::Hmac(key))
            }
            Scheme::Ed25519 => {
                let encoded = text
                    .strip_prefix(ED25519_SECRET_PREFIX)
                    .ok_or(SecretError::Prefix(ED25519_SECRET_PREFIX))?;
                let seed: [u8; 32] = STANDARD
                    .decode(encoded)
                    .map_err(|_| SecretError::Base64)?
                    .try_into()
                    .map_err(|_| SecretError::Length)?;
                Ok(SigningSecret::Ed25519(Box::new(SigningKey::from_bytes(
                    &seed,
                ))))
            }
        }
    }

    /// `v1,<base64>` or `v1a,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut content = Vec::with_capacity(id.len() + body.len() + 24);
        content.extend_from_slice(id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        match self {
            SigningSecret::Hmac(key) => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(&content);
                format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
            }
            SigningSecret::Ed25519(key) => {
                format!("v1a,{}", STANDARD.encode(key.sign(&content).to_bytes()))
            }
        }
    }

    /// What receivers verify with: the HMAC secret itself, or the ed25519 public key.
    pub fn verification_key(&self) -> String {
        match self {
            SigningSecret::Hmac(key) => format!("{HMAC_PREFIX}{}", STANDARD.encode(key)),
            SigningSecret::Ed25519(key) => format!(
                "{ED25519_PUBLIC_PREFIX}{}",
                STANDARD.encode(key.verifying_key().to_bytes())
            ),
        }
    }
}

/// The `webhook-signature` header value: one signature per valid secret, space-separated.
pub fn signature_header(
    secrets: &[SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn reproduces_the_specification_test_vector() {
        let secret =
            SigningSecret::parse(Scheme::HmacSha256, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn ed25519_signatures_verify_with_the_public_key_only() {
        let secret =
            SigningSecret::parse(Scheme::Ed25519, &Scheme::Ed25519.generate_secret()).unwrap();
        let header = secret.sign("msg_1", 1_700_000_000, b"{}");
        let signature = header.strip_prefix("v1a,").unwrap();
        let public = secret.verification_key();
        let public: [u8; 32] = STANDARD
            .decode(public.strip_prefix(ED25519_PUBLIC_PREFIX).unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let signature: [u8; 64] = STANDARD.decode(signature).unwrap().try_into().unwrap();
        VerifyingKey::from_bytes(&public)
            .unwrap()
            .verify(b"msg_1.1700000000.{}", &Signature::from_bytes(&signature))
            .unwrap();
    }

    #[test]
    fn every_valid_secret_signs_during_a_rotation() {
        let old = SigningSecret::parse(Scheme::HmacSha256, &Scheme::HmacSha256.generate_secret())
            .unwrap();
        let new = SigningSecret::parse(Scheme::HmacSha256, &Scheme::HmacSha256.generate_secret())
            .unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 1, b"x");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            [new.sign("msg_1", 1, b"x"), old.sign("msg_1", 1, b"x")]
        );
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            SigningSecret::parse(Scheme::HmacSha256, "whsec_!!").err(),
            Some(SecretError::Base64)
        );
        assert_eq!(
            SigningSecret::parse(Scheme::Ed25519, "whsec_AAAA").err(),
            Some(SecretError::Prefix(ED25519_SECRET_PREFIX))
        );
        assert_eq!(
            SigningSecret::parse(Scheme::Ed25519, "whsk_AAAA").err(),
            Some(SecretError::Length)
        );
    }
}
