//! The target's side of a CHAP exchange (RFC 7143 12.1.3, RFC 1994), sans-IO.
//!
//! ```text
//! I->T  CHAP_A=<A1,A2,...>
//! T->I  CHAP_A=<A>  CHAP_I=<I>  CHAP_C=<C>
//! I->T  CHAP_N=<N>  CHAP_R=<R>  [CHAP_I=<I'>  CHAP_C=<C'>]     (mutual: I' and C')
//! T->I  [CHAP_N=<N'>  CHAP_R=<R'>]
//! ```
//!
//! R = H(I as one byte || secret || C), with H the digest CHAP_A names: 5 MD5, 6 SHA-1,
//! 7 SHA-256, 8 SHA3-256. The target picks the strongest algorithm the initiator offers.
//!
//! [`ChapExchange`] is fed the `CHAP_*` keys of each login request ([`ChapExchange::receive`])
//! and answers with the keys to send back; the random identifier and challenge are passed in
//! at construction, so the exchange is deterministic and can be driven by a fuzzer.

use super::access::ChapCredentials;
use crate::negotiation::parse_number;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// Largest binary value (challenge or response) accepted (RFC 7143 12.1.3: 1024 bytes).
pub const MAX_BINARY_LEN: usize = 1024;

/// Shortest challenge the target sends, whatever the algorithm.
pub const MIN_CHALLENGE_LEN: usize = 16;

/// Bytes of randomness one exchange needs: the identifier, then the challenge.
pub const RANDOM_LEN: usize = 1 + 32;

/// A CHAP digest algorithm (the CHAP_A value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// 5: MD5 (RFC 1994).
    Md5,
    /// 6: SHA-1.
    Sha1,
    /// 7: SHA-256.
    Sha256,
    /// 8: SHA3-256.
    Sha3_256,
}

impl Algorithm {
    /// Every algorithm, strongest first (the target's preference).
    pub const STRONGEST_FIRST: [Algorithm; 4] = [
        Algorithm::Sha3_256,
        Algorithm::Sha256,
        Algorithm::Sha1,
        Algorithm::Md5,
    ];

    /// The algorithm a CHAP_A value names.
    pub fn from_code(code: u32) -> Option<Algorithm> {
        match code {
            5 => Some(Algorithm::Md5),
            6 => Some(Algorithm::Sha1),
            7 => Some(Algorithm::Sha256),
            8 => Some(Algorithm::Sha3_256),
            _ => None,
        }
    }

    /// The CHAP_A value.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Md5 => 5,
            Algorithm::Sha1 => 6,
            Algorithm::Sha256 => 7,
            Algorithm::Sha3_256 => 8,
        }
    }

    /// Length of a response.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 | Algorithm::Sha3_256 => 32,
        }
    }

    /// Length of the challenge the target sends: the digest length, at least
    /// [`MIN_CHALLENGE_LEN`].
    pub fn challenge_len(self) -> usize {
        self.digest_len().max(MIN_CHALLENGE_LEN)
    }

    /// H(id || secret || challenge).
    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn digest<D: sha2::Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update([id]);
            d.update(secret);
            d.update(challenge);
            d.finalize().to_vec()
        }
        match self {
            Algorithm::Md5 => digest::<md5::Md5>(id, secret, challenge),
            Algorithm::Sha1 => digest::<sha1::Sha1>(id, secret, challenge),
            Algorithm::Sha256 => digest::<sha2::Sha256>(id, secret, challenge),
            Algorithm::Sha3_256 => digest::<sha3::Sha3_256>(id, secret, challenge),
        }
    }
}

/// Why a CHAP exchange failed. The login answers Authentication failure (0x0201) for every
/// one of them; the text is for the log and never holds a secret or a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChapError {
    /// CHAP_A offered no algorithm the target supports.
    #[error("no supported CHAP algorithm in CHAP_A={0:?}")]
    NoCommonAlgorithm(String),
    /// A CHAP key arrived at the wrong step, twice, or is not a CHAP key we know.
    #[error("unexpected CHAP key {0}")]
    UnexpectedKey(String),
    /// A key the step needs is missing.
    #[error("missing CHAP key {0}")]
    MissingKey(&'static str),
    /// A value could not be decoded.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// CHAP_N names another user than the one configured.
    #[error("CHAP_N {0:?} is not the configured user")]
    UnknownUser(String),
    /// CHAP_R does not prove the secret.
    #[error("CHAP_R does not match the secret")]
    BadResponse,
    /// CHAP_R is the response of the target's own secret: the same secret is in use in both
    /// directions (RFC 7143 9.2.1).
    #[error("CHAP_R was computed with the target's own secret")]
    SameSecretBothWays,
    /// The initiator asked the target to authenticate itself, but no target credentials
    /// are configured.
    #[error("the initiator asks for mutual CHAP, which is not configured")]
    MutualNotConfigured,
    /// The initiator's challenge is the target's own challenge sent back (RFC 7143 9.2.1).
    #[error("the initiator's CHAP_C reflects the target's challenge")]
    ReflectedChallenge,
    /// The exchange already ended.
    #[error("CHAP keys after the exchange ended")]
    Finished,
}

#[derive(Debug)]
enum State {
    AwaitAlgorithms,
    AwaitResponse {
        algorithm: Algorithm,
        id: u8,
        challenge: Vec<u8>,
    },
    Done,
    Failed,
}

/// The target's side of one CHAP exchange.
#[derive(Debug)]
pub struct ChapExchange {
    credentials: ChapCredentials,
    random: [u8; RANDOM_LEN],
    state: State,
    algorithm: Option<Algorithm>,
}

impl ChapExchange {
    /// An exchange that checks the initiator against `credentials` (and answers a mutual
    /// challenge with their target part). `random` must come from a cryptographic source:
    /// its first byte is the identifier, the rest the challenge.
    pub fn new(credentials: ChapCredentials, random: [u8; RANDOM_LEN]) -> Self {
        ChapExchange {
            credentials,
            random,
            state: State::AwaitAlgorithms,
            algorithm: None,
        }
    }

    /// True once the initiator proved its secret (and, for mutual CHAP, the target answered).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The algorithm chosen, once CHAP_A was answered.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
    }

    /// The user the initiator must name.
    pub fn user(&self) -> &str {
        self.credentials.initiator.user()
    }

    /// Takes the `CHAP_*` keys of one login request; returns the keys to answer with. Any
    /// error ends the exchange (later calls fail with [`ChapError::Finished`]).
    pub fn receive(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ChapError> {
        let result = self.step(keys);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn step(&mut self, keys: &[(String, String)]) -> Result<Vec<(String, String)>, ChapError> {
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in keys {
            if seen.contains(&k.as_str()) {
                return Err(ChapError::UnexpectedKey(format!("{k} (twice)")));
            }
            seen.push(k);
        }
        let get = |name: &str| {
            keys.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match &self.state {
            State::Failed | State::Done => Err(ChapError::Finished),
            State::AwaitAlgorithms => {
                if let Some((k, _)) = keys.iter().find(|(k, _)| k != "CHAP_A") {
                    return Err(ChapError::UnexpectedKey(k.clone()));
                }
                let Some(offer) = get("CHAP_A") else {
                    // Nothing yet (e.g. AuthMethod alone): wait for CHAP_A.
                    return Ok(Vec::new());
                };
                let offered: Vec<Algorithm> = offer
                    .split(',')
                    .filter_map(|a| {
                        parse_number(a)
                            .and_then(|a| u32::try_from(a).ok())
                            .and_then(Algorithm::from_code)
                    })
                    .collect();
                let algorithm = Algorithm::STRONGEST_FIRST
                    .into_iter()
                    .find(|a| offered.contains(a))
                    .ok_or_else(|| {
                        ChapError::NoCommonAlgorithm(offer.chars().take(64).collect())
                    })?;
                let id = self.random[0];
                let challenge = self.random[1..1 + algorithm.challenge_len()].to_vec();
                let answer = vec![
                    ("CHAP_A".to_string(), algorithm.code().to_string()),
                    ("CHAP_I".to_string(), id.to_string()),
                    ("CHAP_C".to_string(), encode_hex(&challenge)),
                ];
                self.algorithm = Some(algorithm);
                self.state = State::AwaitResponse {
                    algorithm,
                    id,
                    challenge,
                };
                Ok(answer)
            }
            State::AwaitResponse {
                algorithm,
                id,
                challenge,
            } => {
                let (algorithm, id) = (*algorithm, *id);
                if let Some((k, _)) = keys
                    .iter()
                    .find(|(k, _)| !matches!(k.as_str(), "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C"))
                {
                    return Err(ChapError::UnexpectedKey(k.clone()));
                }
                let name = get("CHAP_N").ok_or(ChapError::MissingKey("CHAP_N"))?;
                let response = get("CHAP_R").ok_or(ChapError::MissingKey("CHAP_R"))?;
                let response = decode_binary(response).ok_or(ChapError::Malformed("CHAP_R"))?;
                // The mutual challenge is checked before anything is computed for it.
                let mutual = match (get("CHAP_I"), get("CHAP_C")) {
                    (None, None) => None,
                    (Some(i), Some(c)) => {
                        let i = parse_number(i)
                            .and_then(|i| u8::try_from(i).ok())
                            .ok_or(ChapError::Malformed("CHAP_I"))?;
                        let c = decode_binary(c).ok_or(ChapError::Malformed("CHAP_C"))?;
                        if c.is_empty() {
                            return Err(ChapError::Malformed("CHAP_C"));
                        }
                        if bool::from(c.as_slice().ct_eq(challenge)) {
                            return Err(ChapError::ReflectedChallenge);
                        }
                        Some((i, c))
                    }
                    (None, Some(_)) => return Err(ChapError::MissingKey("CHAP_I")),
                    (Some(_), None) => return Err(ChapError::MissingKey("CHAP_C")),
                };
                let expected_user = self.credentials.initiator.user();
                if name != expected_user {
                    return Err(ChapError::UnknownUser(name.chars().take(64).collect()));
                }
                let expected =
                    algorithm.response(id, self.credentials.initiator.secret().expose(), challenge);
                if !bool::from(response.as_slice().ct_eq(&expected)) {
                    return Err(ChapError::BadResponse);
                }
                let mut answer = Vec::new();
                if let Some((i, c)) = mutual {
                    let target = self
                        .credentials
                        .target
                        .as_ref()
                        .ok_or(ChapError::MutualNotConfigured)?;
                    let own = algorithm.response(id, target.secret().expose(), challenge);
                    if bool::from(response.as_slice().ct_eq(&own)) {
                        return Err(ChapError::SameSecretBothWays);
                    }
                    let r = algorithm.response(i, target.secret().expose(), &c);
                    answer.push(("CHAP_N".to_string(), target.user().to_string()));
                    answer.push(("CHAP_R".to_string(), encode_hex(&r)));
                }
                self.state = State::Done;
                Ok(answer)
            }
        }
    }
}

/// `0x` and lower-case hex digits.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A binary value (RFC 7143 5.1): `0x`/`0X` and hex digits (an odd count has an implied
/// leading zero), or `0b`/`0B` and base64. At most [`MAX_BINARY_LEN`] bytes.
pub fn decode_binary(text: &str) -> Option<Vec<u8>> {
    let (prefix, body) = (text.get(..2)?, text.get(2..)?);
    let bytes = match prefix {
        "0x" | "0X" => {
            if body.is_empty() || body.len() > 2 * MAX_BINARY_LEN + 1 {
                return None;
            }
            let digits: Vec<u8> = body
                .chars()
                .map(|c| c.to_digit(16).map(|d| d as u8))
                .collect::<Option<_>>()?;
            let mut out = Vec::with_capacity(digits.len().div_ceil(2));
            let (head, rest) = digits.split_at(digits.len() % 2);
            out.extend(head.iter().copied());
            out.extend(rest.chunks(2).map(|p| (p[0] << 4) | p[1]));
            out
        }
        "0b" | "0B" => {
            if body.is_empty() || body.len() > MAX_BINARY_LEN.div_ceil(3) * 4 {
                return None;
            }
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .ok()?
        }
        _ => return None,
    };
    (bytes.len() <= MAX_BINARY_LEN).then_some(bytes)
}
