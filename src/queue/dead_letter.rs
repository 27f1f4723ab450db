//! Messages rewritten on their way out of a queue: RabbitMQ 3.10's dead
//! letter (`x-death`, `x-first-death-*`, the expiration moved to
//! `original-expiration`) and a quorum queue's `x-delivery-count`.
use std::sync::Arc;

use bytes::Bytes;

use super::{DeathReason, Message, MessageData};
use crate::codec::{BasicProperties, FieldTable, FieldValue, ShortStr};

fn longstr(s: &str) -> FieldValue {
    FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes()))
}

fn text(v: Option<&FieldValue>) -> Option<&[u8]> {
    match v {
        Some(FieldValue::LongStr(b)) => Some(b),
        _ => None,
    }
}

fn decoded(msg: &MessageData) -> BasicProperties {
    BasicProperties::decode(&msg.raw_properties).unwrap_or_default()
}

/// Where a dead letter goes and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Death<'a> {
    /// Why it left.
    pub reason: DeathReason,
    /// The queue it left.
    pub queue: &'a str,
    /// The dead-letter exchange.
    pub exchange: &'a str,
    /// The dead-letter routing key, when the queue sets one.
    pub routing_key: Option<&'a str>,
    /// Now, in seconds since the epoch (`time`).
    pub time: u64,
}

/// The dead letter of `msg`: published to the dead-letter exchange with
/// the dead-letter routing key (or its own), its `x-death` entry for this
/// queue and reason added or counted up and moved to the front, the
/// `x-first-death-*` headers on its first death, and no expiration.
pub fn make(msg: &MessageData, death: Death) -> MessageData {
    let mut props = decoded(msg);
    let mut headers = props.headers.take().unwrap_or_default();
    let mut keys = vec![longstr(&msg.routing_key)];
    for cc in ["CC", "BCC"] {
        if let Some(FieldValue::Array(values)) = headers.get(cc) {
            keys.extend(
                values
                    .iter()
                    .filter(|v| matches!(v, FieldValue::LongStr(_)))
                    .cloned(),
            );
        }
    }
    let mut info = FieldTable::default();
    info.insert("reason", longstr(death.reason.as_str()));
    info.insert("queue", longstr(death.queue));
    info.insert("time", FieldValue::Timestamp(death.time));
    info.insert("exchange", longstr(&msg.exchange));
    info.insert("routing-keys", FieldValue::Array(keys));
    if let Some(e) = &props.expiration {
        info.insert("original-expiration", longstr(e));
    }
    let same = |t: &FieldTable| {
        text(t.get("queue")) == Some(death.queue.as_bytes())
            && text(t.get("reason")) == Some(death.reason.as_str().as_bytes())
    };
    let deaths = match headers.get("x-death") {
        Some(FieldValue::Array(entries)) => {
            let mut tables: Vec<FieldTable> = entries
                .iter()
                .filter_map(|e| match e {
                    FieldValue::Table(t) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            let entry = match tables.iter().position(same) {
                Some(i) => {
                    let mut t = tables.remove(i);
                    let count = t.get("count").and_then(FieldValue::as_i64).unwrap_or(0);
                    t.insert("count", FieldValue::I64(count + 1));
                    t
                }
                None => {
                    let mut t = FieldTable::default();
                    t.insert("count", FieldValue::I64(1));
                    for (k, v) in info.iter() {
                        t.insert(k.clone(), v.clone());
                    }
                    t
                }
            };
            // RabbitMQ sorts the updated entry's keys.
            let mut sorted = entry.0;
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let mut front = FieldTable::default();
            for (k, v) in sorted {
                front.insert(k, v);
            }
            let mut all = vec![FieldValue::Table(front)];
            all.extend(tables.into_iter().map(FieldValue::Table));
            all
        }
        _ => {
            headers.insert("x-first-death-reason", longstr(death.reason.as_str()));
            headers.insert("x-first-death-queue", longstr(death.queue));
            headers.insert("x-first-death-exchange", longstr(&msg.exchange));
            let mut t = FieldTable::default();
            t.insert("count", FieldValue::I64(1));
            for (k, v) in info.iter() {
                t.insert(k.clone(), v.clone());
            }
            vec![FieldValue::Table(t)]
        }
    };
    headers.insert("x-death", FieldValue::Array(deaths));
    let routing_key = match death.routing_key {
        Some(rk) => {
            headers.remove("CC");
            ShortStr::from(rk)
        }
        None => msg.routing_key.clone(),
    };
    props.headers = Some(headers);
    props.expiration = None;
    MessageData {
        exchange: ShortStr::from(death.exchange),
        routing_key,
        raw_properties: props.to_raw(),
        body: msg.body.clone(),
        persistent: msg.persistent,
        expiration_ms: None,
        priority: msg.priority,
    }
}

/// The queues of the `x-death` history of a dead letter that a new death
/// to `queue` would close a cycle with, as RabbitMQ decides: `queue` is in
/// the history and no death since (itself included) was a rejection.
pub fn is_cycle(msg: &MessageData, reason: DeathReason, queue: &str) -> bool {
    if reason == DeathReason::Rejected {
        return false;
    }
    let props = decoded(msg);
    let Some(FieldValue::Array(deaths)) = props.headers.as_ref().and_then(|h| h.get("x-death"))
    else {
        return false;
    };
    let mut seen = Vec::new();
    for d in deaths {
        let FieldValue::Table(t) = d else {
            return false;
        };
        seen.push(t);
        if text(t.get("queue")) == Some(queue.as_bytes()) {
            return seen
                .iter()
                .all(|t| text(t.get("reason")) != Some(b"rejected".as_slice()));
        }
    }
    false
}

/// `msg` with the `x-delivery-count` header a quorum queue adds to a
/// message that came back `count` times.
pub fn with_delivery_count(msg: &Message, count: u32) -> Message {
    let mut props = decoded(msg);
    let mut headers = props.headers.take().unwrap_or_default();
    headers.insert("x-delivery-count", FieldValue::I64(count.into()));
    props.headers = Some(headers);
    Arc::new(MessageData {
        exchange: msg.exchange.clone(),
        routing_key: msg.routing_key.clone(),
        raw_properties: props.to_raw(),
        body: msg.body.clone(),
        persistent: msg.persistent,
        expiration_ms: msg.expiration_ms,
        priority: msg.priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(props: BasicProperties) -> MessageData {
        MessageData {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            raw_properties: props.to_raw(),
            body: Bytes::from_static(b"b"),
            persistent: false,
            expiration_ms: None,
            priority: 0,
        }
    }

    fn death(reason: DeathReason, queue: &'static str) -> Death<'static> {
        Death {
            reason,
            queue,
            exchange: "dlx",
            routing_key: None,
            time: 1_700_000_000,
        }
    }

    fn x_death(m: &MessageData) -> Vec<FieldTable> {
        let p = decoded(m);
        match p.headers.unwrap().get("x-death") {
            Some(FieldValue::Array(v)) => v
                .iter()
                .map(|e| match e {
                    FieldValue::Table(t) => t.clone(),
                    _ => panic!("not a table"),
                })
                .collect(),
            _ => panic!("no x-death"),
        }
    }

    #[test]
    fn first_death_sets_the_first_headers_and_moves_the_expiration() {
        let m = message(BasicProperties {
            expiration: Some("500".into()),
            ..Default::default()
        });
        let d = make(&m, death(DeathReason::Expired, "q1"));
        assert_eq!(&*d.exchange, "dlx");
        assert_eq!(&*d.routing_key, "rk");
        let p = decoded(&d);
        assert_eq!(p.expiration, None);
        let h = p.headers.unwrap();
        assert_eq!(text(h.get("x-first-death-reason")), Some(&b"expired"[..]));
        assert_eq!(text(h.get("x-first-death-queue")), Some(&b"q1"[..]));
        assert_eq!(text(h.get("x-first-death-exchange")), Some(&b"ex"[..]));
        let xd = x_death(&d);
        assert_eq!(xd.len(), 1);
        assert_eq!(xd[0].get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(text(xd[0].get("original-expiration")), Some(&b"500"[..]));
        assert_eq!(
            xd[0].get("routing-keys"),
            Some(&FieldValue::Array(vec![longstr("rk")]))
        );
    }

    #[test]
    fn a_second_death_in_the_same_queue_counts_up_and_goes_first() {
        let m = message(BasicProperties::default());
        let once = make(&m, death(DeathReason::Rejected, "q1"));
        let twice = make(&once, death(DeathReason::Expired, "q2"));
        let thrice = make(&twice, death(DeathReason::Rejected, "q1"));
        let xd = x_death(&thrice);
        assert_eq!(xd.len(), 2);
        assert_eq!(text(xd[0].get("queue")), Some(&b"q1"[..]));
        assert_eq!(xd[0].get("count"), Some(&FieldValue::I64(2)));
        assert_eq!(text(xd[1].get("queue")), Some(&b"q2"[..]));
        // The first death's headers stay.
        let h = decoded(&thrice).headers.unwrap();
        assert_eq!(text(h.get("x-first-death-queue")), Some(&b"q1"[..]));
    }

    #[test]
    fn cycles_without_a_rejection_are_found() {
        let m = message(BasicProperties::default());
        let expired = make(&m, death(DeathReason::Expired, "q1"));
        assert!(is_cycle(&expired, DeathReason::Expired, "q1"));
        assert!(!is_cycle(&expired, DeathReason::Rejected, "q1"));
        assert!(!is_cycle(&expired, DeathReason::Expired, "q2"));
        let rejected = make(&m, death(DeathReason::Rejected, "q1"));
        assert!(!is_cycle(&rejected, DeathReason::Expired, "q1"));
    }
}
