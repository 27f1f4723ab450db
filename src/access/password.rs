//! Password hashes in RabbitMQ's internal format, so users (and their
//! passwords) move between RabbitMQ and Warren through definitions files.
//!
//! RabbitMQ (rabbit_password, rabbit_password_hashing_*) stores
//! `salt ‖ H(salt ‖ password)`: a 4-byte random salt, then the digest of the
//! salt followed by the UTF-8 password. Definitions carry it base64-encoded
//! in `password_hash`, with the module name of H in `hashing_algorithm`.
//!
//! An empty hash means the user has no password: RabbitMQ writes
//! `"password_hash": ""` for a user after `clear_password`, and its login
//! check (`<<Salt:4/binary, Hash/binary>>`) can never match fewer than four
//! bytes, so such a user can only log in by other means (x509, other auth
//! backends). [`PasswordHash::none`] is that state.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use md5::Md5;
use rand::Rng;
use sha2::{Digest, Sha256, Sha512};

const SALT_LEN: usize = 4;

/// Erlang's `base64:decode` accepts input without `=` padding; so must we,
/// or hand-written definitions RabbitMQ takes would be refused here.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The digest inside a hash, named in definitions by RabbitMQ's module name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// `rabbit_password_hashing_sha256`, RabbitMQ's default since 3.6.
    Sha256,
    /// `rabbit_password_hashing_sha512`.
    Sha512,
    /// `rabbit_password_hashing_md5`, the only one before 3.6.
    Md5,
}

impl HashAlgorithm {
    /// The algorithm for a `hashing_algorithm` value, if it is one of
    /// RabbitMQ's built-in modules.
    pub fn from_rabbit_name(name: &str) -> Option<Self> {
        match name {
            "rabbit_password_hashing_sha256" => Some(HashAlgorithm::Sha256),
            "rabbit_password_hashing_sha512" => Some(HashAlgorithm::Sha512),
            "rabbit_password_hashing_md5" => Some(HashAlgorithm::Md5),
            _ => None,
        }
    }

    /// RabbitMQ's module name, as written in definitions.
    pub fn rabbit_name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// The algorithm of a user imported from definitions, as RabbitMQ picks
    /// it (rabbit_auth_backend_internal:hashing_algorithm/2): the user's
    /// `hashing_algorithm` if given, else MD5 for files exported by 3.0–3.5
    /// (which wrote no algorithm and only had MD5), else the default.
    pub fn for_definitions(
        name: Option<&str>,
        rabbit_version: Option<&str>,
    ) -> Result<Self, String> {
        if let Some(name) = name {
            return Self::from_rabbit_name(name)
                .ok_or_else(|| format!("unsupported hashing_algorithm '{name}'"));
        }
        let old = ["3.0.", "3.1.", "3.2.", "3.3.", "3.4.", "3.5."];
        Ok(match rabbit_version {
            Some(v) if old.iter().any(|p| v.starts_with(p)) => HashAlgorithm::Md5,
            _ => HashAlgorithm::Sha256,
        })
    }

    /// Bytes of this algorithm's digest.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Md5 => 16,
        }
    }

    fn digest(self, salt: &[u8], password: &str) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &str) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password.as_bytes());
            d.finalize().to_vec()
        }
        match self {
            HashAlgorithm::Sha256 => run::<Sha256>(salt, password),
            HashAlgorithm::Sha512 => run::<Sha512>(salt, password),
            HashAlgorithm::Md5 => run::<Md5>(salt, password),
        }
    }

    /// Tag byte in Warren's binary definitions log; never renumber.
    fn tag(self) -> u8 {
        match self {
            HashAlgorithm::Sha256 => 0,
            HashAlgorithm::Sha512 => 1,
            HashAlgorithm::Md5 => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(HashAlgorithm::Sha256),
            1 => Some(HashAlgorithm::Sha512),
            2 => Some(HashAlgorithm::Md5),
            _ => None,
        }
    }
}

/// A user's stored password: the algorithm and `salt ‖ digest`, or nothing
/// (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHash {
    /// How the digest was made.
    pub algorithm: HashAlgorithm,
    /// `salt ‖ digest`, or empty for no password.
    bytes: Vec<u8>,
}

impl PasswordHash {
    /// Hashes `password` with SHA-256 and a fresh random salt, as RabbitMQ
    /// does by default.
    pub fn new(password: &str) -> Self {
        // rand:uniform(16#ffffffff) in RabbitMQ: never an all-zero salt.
        let salt: u32 = rand::thread_rng().gen_range(1..=u32::MAX);
        Self::with_salt(HashAlgorithm::Sha256, salt.to_be_bytes(), password)
    }

    /// The hash of `password` with a given salt (tests, and known vectors).
    pub fn with_salt(algorithm: HashAlgorithm, salt: [u8; SALT_LEN], password: &str) -> Self {
        let mut bytes = salt.to_vec();
        bytes.extend_from_slice(&algorithm.digest(&salt, password));
        PasswordHash { algorithm, bytes }
    }

    /// No password: password login always fails.
    pub fn none() -> Self {
        PasswordHash {
            algorithm: HashAlgorithm::Sha256,
            bytes: Vec::new(),
        }
    }

    /// Whether this is [`PasswordHash::none`]: no password login.
    pub fn is_none(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Parses a definitions `password_hash`. The empty string is a user
    /// without a password (kept with `algorithm`, which RabbitMQ exports
    /// even then). Anything else must be exactly salt plus one digest of
    /// `algorithm`: RabbitMQ would store other lengths, but no password
    /// could ever match them, so refusing them catches a wrong algorithm.
    pub fn from_base64(algorithm: HashAlgorithm, text: &str) -> Result<Self, String> {
        // Erlang's decoder also skips embedded spaces.
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = LENIENT_BASE64
            .decode(compact.as_bytes())
            .map_err(|e| format!("password_hash is not base64: {e}"))?;
        Self::from_parts(algorithm, bytes)
    }

    /// As RabbitMQ's definitions write `password_hash`.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.bytes)
    }

    /// Whether `password` is this user's password, comparing in constant
    /// time. Like RabbitMQ's login, an empty password never matches.
    pub fn verify(&self, password: &str) -> bool {
        if self.is_none() || password.is_empty() {
            return false;
        }
        let (salt, digest) = self.bytes.split_at(SALT_LEN);
        constant_time_eq(digest, &self.algorithm.digest(salt, password))
    }

    /// Warren's binary form: the algorithm's tag byte, then `salt ‖ digest`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.bytes.len());
        out.push(self.algorithm.tag());
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Reads what [`PasswordHash::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let (&tag, rest) = bytes.split_first().ok_or("empty password hash record")?;
        let algorithm = HashAlgorithm::from_tag(tag)
            .ok_or_else(|| format!("unknown password hash algorithm tag {tag}"))?;
        Self::from_parts(algorithm, rest.to_vec())
    }

    fn from_parts(algorithm: HashAlgorithm, bytes: Vec<u8>) -> Result<Self, String> {
        let want = SALT_LEN + algorithm.digest_len();
        if !bytes.is_empty() && bytes.len() != want {
            return Err(format!(
                "password hash is {} bytes; {} needs {want}",
                bytes.len(),
                algorithm.rabbit_name()
            ));
        }
        Ok(PasswordHash { algorithm, bytes })
    }
}

/// Compares without an early exit, so the time taken does not tell an
/// attacker how many leading bytes of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

    // Computed with Python: base64(salt + hashlib.new(alg, salt + pw.encode()).digest()).
    const SHA256_S3CRET: &str = "3q2+75erHk2Os5WJVehl2mLYxAkbNWB1Xn/4o5TkKVWd0sq4";
    const SHA256_UNICODE: &str = "3q2+72IetiGe+jtveBW6kVa/DWDP+1xZ5pnq7kQO6le3GBXB";
    const SHA512_S3CRET: &str =
        "3q2+75ZDOuS+5EKPqT6fvwPMIv5qfmwgJAnWUm0EhOG4lhGhbtiqUtwlLWc7d2pRcC4N6Y87K6PsXMR0DAfxDK8CY5o=";
    const SHA512_UNICODE: &str =
        "3q2+72iqmxC4gufJTsplheY4bhEj5qMn4kSo4TJiQ+rG8ki5xck9fgUm3UhlVOSRE5mvzlpanU0X/ZCxCKy9OgmX1kY=";
    const MD5_S3CRET: &str = "3q2+7+KYsZ+5Qt2oRkzTPL9OV2g=";
    const MD5_UNICODE: &str = "3q2+76iD0gAya8YWlcGeiKyZX18=";

    // From `rabbitmqctl add_user defs_fixture_u s3cret` then
    // `export_definitions` on RabbitMQ 3.10.8.
    const LIVE_RABBITMQ_S3CRET: &str = "ciPQWD0U7//o7hlzUmBVTzJJaWafF2yh0AP/NsQPpzinUIX6";

    #[test]
    fn known_vectors_match_independent_computation() {
        let cases = [
            (HashAlgorithm::Sha256, "s3cret", SHA256_S3CRET),
            (HashAlgorithm::Sha256, "pässwörd", SHA256_UNICODE),
            (HashAlgorithm::Sha512, "s3cret", SHA512_S3CRET),
            (HashAlgorithm::Sha512, "pässwörd", SHA512_UNICODE),
            (HashAlgorithm::Md5, "s3cret", MD5_S3CRET),
            (HashAlgorithm::Md5, "pässwörd", MD5_UNICODE),
        ];
        for (alg, pw, want) in cases {
            assert_eq!(
                PasswordHash::with_salt(alg, SALT, pw).to_base64(),
                want,
                "{alg:?} {pw}"
            );
            let parsed = PasswordHash::from_base64(alg, want).unwrap();
            assert!(parsed.verify(pw), "{alg:?} {pw}");
            assert!(!parsed.verify("wrong"), "{alg:?} {pw}");
        }
    }

    #[test]
    fn accepts_a_hash_made_by_rabbitmq() {
        let h = PasswordHash::from_base64(HashAlgorithm::Sha256, LIVE_RABBITMQ_S3CRET).unwrap();
        assert!(h.verify("s3cret"));
        assert!(!h.verify("s3cret "));
        assert!(!h.verify("S3cret"));
        assert_eq!(h.to_base64(), LIVE_RABBITMQ_S3CRET);
    }

    #[test]
    fn same_digest_under_another_algorithm_fails() {
        // A SHA-256 hash declared as SHA-512 has the wrong length.
        assert!(PasswordHash::from_base64(HashAlgorithm::Sha512, SHA256_S3CRET).is_err());
        assert!(PasswordHash::from_base64(HashAlgorithm::Md5, SHA256_S3CRET).is_err());
    }

    #[test]
    fn new_salts_randomly_and_verifies() {
        let a = PasswordHash::new("s3cret");
        let b = PasswordHash::new("s3cret");
        assert_eq!(a.algorithm, HashAlgorithm::Sha256);
        assert!(a.verify("s3cret") && b.verify("s3cret"));
        assert!(!a.verify("s3cre"));
        // Two 32-bit salts collide with probability 2^-32.
        assert_ne!(a, b);
        assert_eq!(a.to_base64().len(), 48);
    }

    #[test]
    fn no_password_never_verifies() {
        let none = PasswordHash::none();
        assert!(none.is_none());
        assert!(!none.verify(""));
        assert!(!none.verify("anything"));
        assert_eq!(none.to_base64(), "");
        let parsed = PasswordHash::from_base64(HashAlgorithm::Md5, "").unwrap();
        assert!(parsed.is_none());
        assert_eq!(parsed.algorithm, HashAlgorithm::Md5);
    }

    #[test]
    fn empty_password_is_refused_even_if_it_was_hashed() {
        let h = PasswordHash::with_salt(HashAlgorithm::Sha256, SALT, "");
        assert!(!h.is_none());
        assert!(!h.verify(""));
    }

    #[test]
    fn base64_and_length_errors() {
        let bad = PasswordHash::from_base64(HashAlgorithm::Sha256, "not base64!").unwrap_err();
        assert!(bad.contains("not base64"), "{bad}");
        // Valid base64 of 3 bytes: shorter than the salt.
        let short = PasswordHash::from_base64(HashAlgorithm::Sha256, "AAAA").unwrap_err();
        assert!(short.contains("3 bytes"), "{short}");
        let long = format!("{SHA256_S3CRET}AAAA");
        assert!(PasswordHash::from_base64(HashAlgorithm::Sha256, &long).is_err());
        // URL-safe characters are not in the standard alphabet.
        assert!(
            PasswordHash::from_base64(HashAlgorithm::Md5, "3q2-7-KYsZ-5Qt2oRkzTPL9OV2g=").is_err()
        );
    }

    #[test]
    fn base64_leniency_matches_erlang() {
        let unpadded = SHA512_S3CRET.trim_end_matches('=');
        assert_ne!(unpadded, SHA512_S3CRET);
        let h = PasswordHash::from_base64(HashAlgorithm::Sha512, unpadded).unwrap();
        assert!(h.verify("s3cret"));
        let spaced = format!("{} {}", &MD5_S3CRET[..8], &MD5_S3CRET[8..]);
        assert!(PasswordHash::from_base64(HashAlgorithm::Md5, &spaced)
            .unwrap()
            .verify("s3cret"));
    }

    #[test]
    fn rabbit_names_round_trip() {
        for alg in [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha512,
            HashAlgorithm::Md5,
        ] {
            assert_eq!(
                HashAlgorithm::from_rabbit_name(alg.rabbit_name()),
                Some(alg)
            );
        }
        assert_eq!(
            HashAlgorithm::Sha256.rabbit_name(),
            "rabbit_password_hashing_sha256"
        );
        assert_eq!(HashAlgorithm::from_rabbit_name("sha256"), None);
    }

    #[test]
    fn algorithm_for_definitions_follows_rabbitmq_defaults() {
        use HashAlgorithm::*;
        let md5 = Some("rabbit_password_hashing_md5");
        assert_eq!(HashAlgorithm::for_definitions(md5, Some("3.10.8")), Ok(Md5));
        assert_eq!(HashAlgorithm::for_definitions(None, Some("3.5.7")), Ok(Md5));
        assert_eq!(HashAlgorithm::for_definitions(None, Some("3.0.0")), Ok(Md5));
        assert_eq!(
            HashAlgorithm::for_definitions(None, Some("3.6.0")),
            Ok(Sha256)
        );
        assert_eq!(
            HashAlgorithm::for_definitions(None, Some("3.10.8")),
            Ok(Sha256)
        );
        assert_eq!(HashAlgorithm::for_definitions(None, None), Ok(Sha256));
        assert!(HashAlgorithm::for_definitions(Some("my_module"), None).is_err());
    }

    #[test]
    fn binary_form_round_trips() {
        for h in [
            PasswordHash::with_salt(HashAlgorithm::Sha256, SALT, "a"),
            PasswordHash::with_salt(HashAlgorithm::Sha512, SALT, "b"),
            PasswordHash::with_salt(HashAlgorithm::Md5, SALT, "c"),
            PasswordHash::none(),
        ] {
            let bytes = h.to_bytes();
            assert_eq!(bytes[0], h.algorithm.tag());
            assert_eq!(PasswordHash::from_bytes(&bytes).unwrap(), h);
        }
        let md5 = PasswordHash::with_salt(HashAlgorithm::Md5, SALT, "c").to_bytes();
        assert!(PasswordHash::from_bytes(&md5[..md5.len() - 1]).is_err());
        assert!(PasswordHash::from_bytes(&[9, 1, 2, 3, 4]).is_err());
        assert!(PasswordHash::from_bytes(&[]).is_err());
    }

    #[test]
    fn constant_time_eq_compares_fully() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
