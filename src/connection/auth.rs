//! SASL PLAIN and AMQPLAIN: the credentials a client presents. Checking
//! them is the access module's, against this shard's replica
//! ([`crate::access::Access::login`]).
use crate::config::AuthMechanism;

/// The configured mechanisms a connection offers: EXTERNAL only where a
/// verified client certificate names the user (as RabbitMQ's
/// `should_offer`).
pub fn offered(configured: &[AuthMechanism], verified_cert: bool) -> Vec<AuthMechanism> {
    configured
        .iter()
        .copied()
        .filter(|m| *m != AuthMechanism::External || verified_cert)
        .collect()
}

/// `connection.start`'s space-separated `mechanisms`.
pub fn mechanisms_field(offered: &[AuthMechanism]) -> String {
    offered
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    UnknownMechanism,
    /// The response could not be read.
    Malformed,
}

/// The user name and password in a start-ok response.
pub fn credentials(mechanism: &str, response: &[u8]) -> Result<(String, String), AuthError> {
    match mechanism {
        "PLAIN" => parse_plain(response),
        "AMQPLAIN" => parse_amqplain(response),
        _ => return Err(AuthError::UnknownMechanism),
    }
    .ok_or(AuthError::Malformed)
}

/// The user EXTERNAL logs in as: the client certificate's subject DN or
/// its CN, as `ssl_cert_login_from` says (the response is ignored, as
/// RabbitMQ ignores it).
pub fn certificate_user(cert: &[u8], from: crate::config::CertLoginFrom) -> Option<String> {
    match from {
        crate::config::CertLoginFrom::DistinguishedName => crate::access::cert::subject_dn(cert),
        crate::config::CertLoginFrom::CommonName => crate::access::cert::common_name(cert),
    }
}

/// `[authzid] NUL authcid NUL passwd`
fn parse_plain(r: &[u8]) -> Option<(String, String)> {
    let mut parts = r.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let pass = std::str::from_utf8(parts.next()?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((user.to_string(), pass.to_string()))
}

/// A field table without its length prefix holding LOGIN and PASSWORD as
/// long strings.
fn parse_amqplain(mut r: &[u8]) -> Option<(String, String)> {
    let (mut user, mut pass) = (None, None);
    while !r.is_empty() {
        let klen = *r.first()? as usize;
        let key = r.get(1..1 + klen)?;
        r = &r[1 + klen..];
        if *r.first()? != b'S' {
            return None;
        }
        let vlen = u32::from_be_bytes(r.get(1..5)?.try_into().ok()?) as usize;
        let value = std::str::from_utf8(r.get(5..5 + vlen)?).ok()?.to_string();
        r = &r[5 + vlen..];
        match key {
            b"LOGIN" => user = Some(value),
            b"PASSWORD" => pass = Some(value),
            _ => {}
        }
    }
    Some((user?, pass?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_is_offered_only_with_a_certificate() {
        use AuthMechanism::*;
        let all = [Plain, AmqPlain, External];
        assert_eq!(mechanisms_field(&offered(&all, false)), "PLAIN AMQPLAIN");
        assert_eq!(
            mechanisms_field(&offered(&all, true)),
            "PLAIN AMQPLAIN EXTERNAL"
        );
        assert_eq!(
            mechanisms_field(&offered(&[External, Plain], true)),
            "EXTERNAL PLAIN"
        );
        assert_eq!(mechanisms_field(&offered(&[External], false)), "");
    }

    #[test]
    fn plain_and_amqplain() {
        let guest = ("guest".to_string(), "guest".to_string());
        assert_eq!(credentials("PLAIN", b"\0guest\0guest"), Ok(guest.clone()));
        assert_eq!(
            credentials("PLAIN", b"authz\0guest\0guest"),
            Ok(guest.clone())
        );
        assert_eq!(credentials("PLAIN", b"garbage"), Err(AuthError::Malformed));
        let mut t = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "guest")] {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(b'S');
            t.extend_from_slice(&(v.len() as u32).to_be_bytes());
            t.extend_from_slice(v.as_bytes());
        }
        assert_eq!(credentials("AMQPLAIN", &t), Ok(guest));
        assert_eq!(
            credentials("AMQPLAIN", &t[..t.len() - 1]),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            credentials("EXTERNAL", b""),
            Err(AuthError::UnknownMechanism)
        );
    }
}
