//! The user name in a client certificate, for the EXTERNAL mechanism
//! (RabbitMQ's `rabbitmq_auth_mechanism_ssl`): the subject's
//! distinguished name as RabbitMQ writes it, or its common name.
//!
//! A small DER walk down to the subject (certificate, tbsCertificate,
//! past version, serial, signature, issuer and validity; the issuer's and
//! subject's names also serve `config::tls` to complete a chain): the certificate
//! was verified by rustls before it gets here, so only its layout is read.

/// RabbitMQ's short names for subject attributes, by OID.
const NAMES: [(&str, &str); 17] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.42", "GIVENNAME"),
    ("2.5.4.43", "INITIALS"),
    ("2.5.4.44", "GENERATIONQUALIFIER"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "TITLE"),
    ("2.5.4.6", "C"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.65", "PSEUDONYM"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "EMAILADDRESS"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

const COMMON_NAME: &str = "2.5.4.3";

/// One attribute of the subject: its OID (dotted) and its value as text
/// (a string type decoded; anything else as `#` and its DER in hex).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    oid: String,
    value: String,
}

/// The subject's distinguished name as RabbitMQ prints it: the RDNs from
/// the last to the first (RFC 4514 order), joined by `,`, the attributes
/// of a multi-valued RDN joined by `+`, each `NAME=value` with RFC 4514
/// escapes (`CN=client,O=Example,C=US`). `None`: not a certificate.
pub fn subject_dn(der: &[u8]) -> Option<String> {
    let rdns = subject(der)?;
    let parts: Vec<String> = rdns
        .iter()
        .rev()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let name = NAMES
                        .iter()
                        .find(|(oid, _)| *oid == a.oid)
                        .map(|(_, n)| (*n).to_owned())
                        .unwrap_or_else(|| a.oid.clone());
                    format!("{name}={}", escape(&a.value))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(parts.join(","))
}

/// The subject's first common name (CN), unescaped.
pub fn common_name(der: &[u8]) -> Option<String> {
    subject(der)?
        .into_iter()
        .flatten()
        .find(|a| a.oid == COMMON_NAME)
        .map(|a| a.value)
}

/// RFC 4514's escapes: `"+,;<>\` anywhere, `#` or a space first, a space
/// last.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let n = v.chars().count();
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One DER element: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = tlv(input)?;
    (t == tag).then_some((content, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// The issuer's and the subject's names, as DER (for matching a
/// certificate to the one that issued it).
pub fn issuer_and_subject(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2; // [0] version
    }
    rest = expect(rest, 0x02)?.1; // serial number
    rest = expect(rest, SEQUENCE)?.1; // signature algorithm
    let (issuer, rest) = expect(rest, SEQUENCE)?;
    let rest = expect(rest, SEQUENCE)?.1; // validity
    let (subject, _) = expect(rest, SEQUENCE)?;
    Some((issuer, subject))
}

/// The subject's RDNs, in certificate order.
fn subject(der: &[u8]) -> Option<Vec<Vec<Attribute>>> {
    let (_, mut name) = issuer_and_subject(der)?;
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (mut set, next) = expect(name, SET)?;
        name = next;
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (atv, next) = expect(set, SEQUENCE)?;
            set = next;
            let (oid, value) = expect(atv, 0x06)?;
            let (tag, content, _) = tlv(value)?;
            rdn.push(Attribute {
                oid: oid_text(oid)?,
                value: value_text(tag, content, value),
            });
        }
        rdns.push(rdn);
    }
    Some(rdns)
}

fn oid_text(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = acc.checked_mul(128)? | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    if arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join("."),
    )
}

fn value_text(tag: u8, content: &[u8], whole: &[u8]) -> String {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString,
        // VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8_lossy(content).into_owned(),
        // TeletexString: read as Latin-1, as most encoders mean it.
        0x14 => content.iter().map(|&b| b as char).collect(),
        // BMPString: UTF-16BE.
        0x1e => {
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        // UniversalString: UTF-32BE.
        0x1c => content
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
        _ => {
            let hex: String = whole.iter().map(|b| format!("{b:02X}")).collect();
            format!("#{hex}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 0x80 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    fn atv(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        der(0x30, &[der(0x06, oid), der(tag, value)].concat())
    }

    /// A certificate skeleton with this subject (and nothing that matters
    /// elsewhere).
    fn cert(subject: &[Vec<u8>]) -> Vec<u8> {
        let name = der(0x30, &subject.concat());
        let tbs = [
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &[0x01, 0x02]),
            der(
                0x30,
                &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
            ),
            der(0x30, &[]),
            der(0x30, &[]),
            name,
            der(0x30, &[0; 200]), // a long key info: long-form length
        ]
        .concat();
        der(0x30, &[der(0x30, &tbs), der(0x30, &[])].concat())
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];

    #[test]
    fn dn_in_rabbitmq_order_and_names() {
        let c = cert(&[
            der(0x31, &atv(C, 0x13, b"US")),
            der(0x31, &atv(O, 0x0c, b"Example, Inc.")),
            der(
                0x31,
                &[atv(OU, 0x0c, b"dev"), atv(OU, 0x0c, b"ops")].concat(),
            ),
            der(0x31, &atv(CN, 0x0c, b"client")),
        ]);
        assert_eq!(
            subject_dn(&c).unwrap(),
            "CN=client,OU=dev+OU=ops,O=Example\\, Inc.,C=US"
        );
        assert_eq!(common_name(&c).unwrap(), "client");
    }

    #[test]
    fn unknown_attributes_and_escapes() {
        // 2.5.4.97 (organizationIdentifier) has no short name: dotted.
        let c = cert(&[
            der(0x31, &atv(&[0x55, 0x04, 0x61], 0x0c, b"X1")),
            der(0x31, &atv(CN, 0x1e, &[0, b'#', 0, b'a', 0, b' '])),
        ]);
        assert_eq!(subject_dn(&c).unwrap(), "CN=\\#a\\ ,2.5.4.97=X1");
        assert_eq!(common_name(&c).unwrap(), "#a ");
    }

    #[test]
    fn issuer_and_subject_names() {
        let c = cert(&[der(0x31, &atv(CN, 0x0c, b"leaf"))]);
        let (issuer, subject) = issuer_and_subject(&c).unwrap();
        assert_eq!(issuer, b"");
        assert_eq!(subject, der(0x31, &atv(CN, 0x0c, b"leaf")).as_slice());
        assert_eq!(issuer_and_subject(&c[..c.len() / 2]), None);
    }

    #[test]
    fn no_cn_and_garbage() {
        let c = cert(&[der(0x31, &atv(O, 0x13, b"Org"))]);
        assert_eq!(common_name(&c), None);
        assert_eq!(subject_dn(&c).unwrap(), "O=Org");
        assert_eq!(subject_dn(b"\x30\x05junk"), None);
        assert_eq!(subject_dn(&c[..c.len() / 2]), None);
    }
}
