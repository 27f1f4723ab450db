//! SASL PLAIN and AMQPLAIN against the built-in user list.
//!
//! For now the only user is RabbitMQ's default `guest`/`guest`, which (as
//! in RabbitMQ) may only log in over loopback. User management is a later
//! piece of work; it plugs in behind [`authenticate`].
use std::net::IpAddr;

pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    UnknownMechanism,
    Refused,
    LoopbackOnly,
}

/// Returns the authenticated user name.
pub fn authenticate(
    mechanism: &str,
    response: &[u8],
    peer: Option<IpAddr>,
) -> Result<String, AuthError> {
    let (user, pass) = match mechanism {
        "PLAIN" => parse_plain(response),
        "AMQPLAIN" => parse_amqplain(response),
        _ => return Err(AuthError::UnknownMechanism),
    }
    .ok_or(AuthError::Refused)?;
    if user != "guest" || pass != "guest" {
        return Err(AuthError::Refused);
    }
    // On a dual-stack socket 127.0.0.1 arrives as ::ffff:127.0.0.1.
    if peer.is_some_and(|ip| !ip.to_canonical().is_loopback()) {
        return Err(AuthError::LoopbackOnly);
    }
    Ok(user)
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
    fn plain_and_amqplain() {
        let lo = Some(IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            authenticate("PLAIN", b"\0guest\0guest", lo),
            Ok("guest".into())
        );
        assert_eq!(
            authenticate("PLAIN", b"\0guest\0wrong", lo),
            Err(AuthError::Refused)
        );
        assert_eq!(
            authenticate("PLAIN", b"garbage", lo),
            Err(AuthError::Refused)
        );
        let mut t = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "guest")] {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(b'S');
            t.extend_from_slice(&(v.len() as u32).to_be_bytes());
            t.extend_from_slice(v.as_bytes());
        }
        assert_eq!(authenticate("AMQPLAIN", &t, lo), Ok("guest".into()));
        assert_eq!(
            authenticate("AMQPLAIN", &t[..t.len() - 1], lo),
            Err(AuthError::Refused)
        );
        assert_eq!(
            authenticate("EXTERNAL", b"", lo),
            Err(AuthError::UnknownMechanism)
        );
        let remote = Some(IpAddr::from([10, 1, 2, 3]));
        assert_eq!(
            authenticate("PLAIN", b"\0guest\0guest", remote),
            Err(AuthError::LoopbackOnly)
        );
    }
}
