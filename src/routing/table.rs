//! The routing table of one virtual host: exchanges, their bindings, and a
//! per-exchange compiled structure that `route` walks without allocating
//! (beyond the caller's output vector and, for big fan-outs, scratch sets).

use super::set::{ScratchSet, VecSet};
use super::topic::TopicTrie;
use super::{headers::headers_match, FieldTable, ShortStr};
use ahash::AHashMap;
use smallvec::SmallVec;
use std::borrow::Cow;

/// An exchange type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// Routes to bindings whose key equals the routing key.
    Direct,
    /// Routes to every binding; keys are ignored.
    Fanout,
    /// Routes to bindings whose pattern matches the routing key (see [`super::topic`]).
    Topic,
    /// Routes on message headers against binding arguments (`x-match`).
    Headers,
}

impl ExchangeKind {
    /// The kind named by exchange.declare's `type`; `None` for any other type.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "direct" => Self::Direct,
            "fanout" => Self::Fanout,
            "topic" => Self::Topic,
            "headers" => Self::Headers,
            _ => return None,
        })
    }

    /// The AMQP name, as [`parse`](Self::parse) takes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A queue, by name.
    Queue(ShortStr),
    /// An exchange, by name (exchange-to-exchange binding).
    Exchange(ShortStr),
}

/// One binding, as queue.bind or exchange.bind declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The exchange messages come from.
    pub source: ShortStr,
    /// Where they go.
    pub destination: Destination,
    /// The key to match: a pattern for topic exchanges, ignored by fanout and
    /// headers ones.
    pub routing_key: ShortStr,
    /// Arguments; headers exchanges match on them. Stored sorted by key.
    pub arguments: FieldTable,
}

/// RabbitMQ sorts binding arguments by key (stable) before storing or
/// comparing them, so `{a:1,b:2}` and `{b:2,a:1}` are the same binding.
fn canonical_args(args: &FieldTable) -> Cow<'_, FieldTable> {
    if args.0.windows(2).all(|w| w[0].0 <= w[1].0) {
        Cow::Borrowed(args)
    } else {
        let mut sorted = args.clone();
        sorted.0.sort_by(|a, b| a.0.cmp(&b.0));
        Cow::Owned(sorted)
    }
}

/// What `route` consults. Direct/fanout/topic ignore arguments, so they hold
/// each (destination, key) once however many argument variants are bound;
/// headers hold one entry per binding.
#[derive(Debug, Clone)]
enum Router {
    Direct(AHashMap<ShortStr, VecSet<Destination>>),
    Fanout(VecSet<Destination>),
    Topic(TopicTrie<Destination>),
    Headers(Vec<(FieldTable, Destination)>),
}

#[derive(Debug, Clone)]
struct Exchange {
    kind: ExchangeKind,
    /// Bindings from this exchange: destination -> routing key -> bindings
    /// that differ only in arguments. Grouping by destination makes deleting
    /// a queue cost O(its bindings), not O(all bindings of the exchange).
    by_dest: AHashMap<Destination, AHashMap<ShortStr, SmallVec<[Binding; 1]>>>,
    router: Router,
    /// Its alternate exchange: where a message goes that its bindings
    /// route nowhere (see [`RoutingTable::set_alternate_exchange`]).
    alternate: Option<ShortStr>,
    /// Messages routed from it on this shard (plain cells, counted by
    /// `route`, which has the exchange in hand).
    counters: crate::metrics::ExchangeCounters,
}

impl Exchange {
    fn new(kind: ExchangeKind) -> Self {
        let router = match kind {
            ExchangeKind::Direct => Router::Direct(AHashMap::new()),
            ExchangeKind::Fanout => Router::Fanout(VecSet::default()),
            ExchangeKind::Topic => Router::Topic(TopicTrie::new()),
            ExchangeKind::Headers => Router::Headers(Vec::new()),
        };
        Self {
            kind,
            by_dest: AHashMap::new(),
            router,
            alternate: None,
            counters: Default::default(),
        }
    }
}

impl Router {
    /// Updates the router after `b` was added; `new_key`: first binding for
    /// (destination, key); `new_dest`: first binding for the destination.
    fn add(&mut self, b: &Binding, new_key: bool, new_dest: bool) {
        match self {
            Router::Direct(m) if new_key => {
                m.entry(b.routing_key.clone())
                    .or_default()
                    .insert(b.destination.clone());
            }
            Router::Fanout(s) if new_dest => {
                s.insert(b.destination.clone());
            }
            Router::Topic(t) if new_key => {
                t.insert(&b.routing_key, b.destination.clone());
            }
            Router::Headers(v) => v.push((b.arguments.clone(), b.destination.clone())),
            _ => {}
        }
    }

    /// Mirror of `add` after `b` was removed.
    fn remove(&mut self, b: &Binding, key_gone: bool, dest_gone: bool) {
        match self {
            Router::Direct(m) if key_gone => {
                if let Some(s) = m.get_mut(&*b.routing_key) {
                    s.remove(&b.destination);
                    if s.is_empty() {
                        m.remove(&*b.routing_key);
                    }
                }
            }
            Router::Fanout(s) if dest_gone => {
                s.remove(&b.destination);
            }
            Router::Topic(t) if key_gone => {
                t.remove(&b.routing_key, &b.destination);
            }
            Router::Headers(v) => {
                if let Some(i) = v
                    .iter()
                    .position(|(a, d)| *d == b.destination && *a == b.arguments)
                {
                    v.swap_remove(i);
                }
            }
            _ => {}
        }
    }
}

impl Exchange {
    /// Removes every binding to `dest`, returning how many there were.
    fn remove_dest(&mut self, dest: &Destination) -> usize {
        let Some(keys) = self.by_dest.remove(dest) else {
            return 0;
        };
        let mut n = 0;
        let last = keys.len();
        for (i, (_, bs)) in keys.into_iter().enumerate() {
            let m = bs.len();
            for (j, b) in bs.iter().enumerate() {
                self.router
                    .remove(b, j + 1 == m, i + 1 == last && j + 1 == m);
                n += 1;
            }
        }
        n
    }
}

/// Reverse index: destination name -> source exchange -> binding count.
type SourceIndex = AHashMap<ShortStr, AHashMap<ShortStr, usize>>;

fn index_add(ix: &mut SourceIndex, dest: &ShortStr, source: &ShortStr) {
    *ix.entry(dest.clone())
        .or_default()
        .entry(source.clone())
        .or_insert(0) += 1;
}

fn index_sub(ix: &mut SourceIndex, dest: &str, source: &str, n: usize) {
    if let Some(sources) = ix.get_mut(dest) {
        if let Some(c) = sources.get_mut(source) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                sources.remove(source);
            }
        }
        if sources.is_empty() {
            ix.remove(dest);
        }
    }
}

/// Exchanges and bindings of one virtual host.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    exchanges: AHashMap<ShortStr, Exchange>,
    /// Which exchanges bind to a queue / an exchange, for O(degree) cleanup.
    queue_sources: SourceIndex,
    exchange_sources: SourceIndex,
}

impl RoutingTable {
    /// An empty table, with no exchanges.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an exchange. Idempotent; redeclaring with another kind keeps
    /// the existing one (the broker answers that case with 406 before here).
    pub fn add_exchange(&mut self, name: ShortStr, kind: ExchangeKind) {
        self.exchanges
            .entry(name)
            .or_insert_with(|| Exchange::new(kind));
    }

    /// Sets (or clears) the alternate exchange of exchange `name`: the
    /// effective one, whatever decided it (the `alternate-exchange`
    /// argument today; `topology::alternate_exchange` says which). Unknown
    /// names are ignored. The alternate need not exist: while it does not,
    /// it routes nothing.
    pub fn set_alternate_exchange(&mut self, name: &str, alternate: Option<ShortStr>) {
        if let Some(x) = self.exchanges.get_mut(name) {
            x.alternate = alternate;
        }
    }

    /// The alternate exchange of exchange `name`, if it has one.
    pub fn alternate_exchange(&self, name: &str) -> Option<&str> {
        self.exchanges.get(name)?.alternate.as_deref()
    }

    /// The kind of exchange `name`, if it is declared.
    pub fn exchange_kind(&self, name: &str) -> Option<ExchangeKind> {
        self.exchanges.get(name).map(|x| x.kind)
    }

    /// Deletes an exchange and every binding where it is the source or the
    /// destination. Unknown names are ignored.
    pub fn remove_exchange(&mut self, name: &str) {
        if let Some(x) = self.exchanges.remove(name) {
            for (dest, keys) in &x.by_dest {
                let n = keys.values().map(|bs| bs.len()).sum();
                match dest {
                    Destination::Queue(q) => index_sub(&mut self.queue_sources, q, name, n),
                    Destination::Exchange(e) => index_sub(&mut self.exchange_sources, e, name, n),
                }
            }
        }
        if let Some(sources) = self.exchange_sources.remove(name) {
            let dest = Destination::Exchange(name.into());
            for src in sources.keys() {
                if let Some(x) = self.exchanges.get_mut(&**src) {
                    x.remove_dest(&dest);
                }
            }
        }
    }

    /// Removes every binding to queue `name` (queue deletion).
    pub fn remove_queue(&mut self, name: &str) {
        if let Some(sources) = self.queue_sources.remove(name) {
            let dest = Destination::Queue(name.into());
            for src in sources.keys() {
                if let Some(x) = self.exchanges.get_mut(&**src) {
                    x.remove_dest(&dest);
                }
            }
        }
    }

    /// Adds a binding. Returns false, changing nothing, if an identical
    /// binding (source, destination, routing key, arguments — arguments
    /// compared after sorting by key, as RabbitMQ does) exists, or if the
    /// source exchange — or a destination exchange — is not declared here
    /// (the broker checks existence first and answers 404; queues are not
    /// known to this table, so queue destinations are not checked).
    pub fn bind(&mut self, mut b: Binding) -> bool {
        if let Cow::Owned(a) = canonical_args(&b.arguments) {
            b.arguments = a;
        }
        if let Destination::Exchange(d) = &b.destination {
            if !self.exchanges.contains_key(&**d) {
                return false;
            }
        }
        let Some(x) = self.exchanges.get_mut(&*b.source) else {
            return false;
        };
        let keys = x.by_dest.entry(b.destination.clone()).or_default();
        let new_dest = keys.is_empty();
        let bs = keys.entry(b.routing_key.clone()).or_default();
        if bs.iter().any(|o| o.arguments == b.arguments) {
            return false;
        }
        let new_key = bs.is_empty();
        match &b.destination {
            Destination::Queue(q) => index_add(&mut self.queue_sources, q, &b.source),
            Destination::Exchange(e) => index_add(&mut self.exchange_sources, e, &b.source),
        }
        x.router.add(&b, new_key, new_dest);
        bs.push(b);
        true
    }

    /// Removes a binding; false if no identical binding exists.
    pub fn unbind(&mut self, b: &Binding) -> bool {
        let args = canonical_args(&b.arguments);
        let Some(x) = self.exchanges.get_mut(&*b.source) else {
            return false;
        };
        let Some(keys) = x.by_dest.get_mut(&b.destination) else {
            return false;
        };
        let Some(bs) = keys.get_mut(&*b.routing_key) else {
            return false;
        };
        let Some(i) = bs.iter().position(|o| o.arguments == *args) else {
            return false;
        };
        let removed = bs.remove(i);
        let key_gone = bs.is_empty();
        if key_gone {
            keys.remove(&*b.routing_key);
        }
        let dest_gone = keys.is_empty();
        if dest_gone {
            x.by_dest.remove(&b.destination);
        }
        x.router.remove(&removed, key_gone, dest_gone);
        match &b.destination {
            Destination::Queue(q) => index_sub(&mut self.queue_sources, q, &b.source, 1),
            Destination::Exchange(e) => index_sub(&mut self.exchange_sources, e, &b.source, 1),
        }
        true
    }

    /// Whether an identical binding exists (arguments compared after sorting,
    /// as in [`bind`](Self::bind)).
    pub fn has_binding(&self, b: &Binding) -> bool {
        let args = canonical_args(&b.arguments);
        self.exchanges
            .get(&*b.source)
            .and_then(|x| x.by_dest.get(&b.destination))
            .and_then(|keys| keys.get(&*b.routing_key))
            .is_some_and(|bs| bs.iter().any(|o| o.arguments == *args))
    }

    /// All bindings, in unspecified order (arguments in canonical order).
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.exchanges
            .values()
            .flat_map(|x| x.by_dest.values())
            .flat_map(|keys| keys.values())
            .flatten()
    }

    /// Bindings whose source is `exchange`.
    pub fn bindings_from<'a>(&'a self, exchange: &str) -> impl Iterator<Item = &'a Binding> {
        self.exchanges
            .get(exchange)
            .into_iter()
            .flat_map(|x| x.by_dest.values())
            .flat_map(|keys| keys.values())
            .flatten()
    }

    /// `exchange.delete if-unused`: RabbitMQ (`rabbit_exchange:delete/3` ->
    /// `has_for_source`) treats an exchange as used only when it is the
    /// SOURCE of a binding; being a destination does not count. Also the
    /// test for auto-delete exchanges.
    pub fn has_bindings_from(&self, exchange: &str) -> bool {
        self.exchanges
            .get(exchange)
            .is_some_and(|x| !x.by_dest.is_empty())
    }

    /// Whether some exchange binds to `exchange` as destination.
    pub fn has_bindings_to_exchange(&self, exchange: &str) -> bool {
        self.exchange_sources.contains_key(exchange)
    }

    /// Whether some exchange binds to queue `queue` (queue.delete if-unused
    /// does not use this in RabbitMQ; handy for listing).
    pub fn has_bindings_to_queue(&self, queue: &str) -> bool {
        self.queue_sources.contains_key(queue)
    }

    /// Routes a message published to `exchange`, pushing each matched queue
    /// name once onto `out` (order unspecified; entries already in `out` are
    /// left alone). Exchange-to-exchange bindings are followed with the same
    /// routing key and headers; each exchange is visited at most once, which
    /// both breaks cycles and matches RabbitMQ (a queue gets one copy however
    /// many paths reach it). Unknown exchange: nothing is pushed.
    ///
    /// Alternate exchanges as RabbitMQ's `rabbit_exchange:route1`: every
    /// exchange the message reaches (the published-to one or one behind an
    /// exchange binding) whose own bindings match nothing at all (neither a
    /// queue nor an exchange) passes it on to its alternate exchange, if
    /// that exists and was not visited yet (chains end, cycles too).
    pub fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<ShortStr>,
    ) {
        let Some((name, x)) = self.exchanges.get_key_value(exchange) else {
            return;
        };
        let start = out.len();
        let source = x;
        let mut visited: ScratchSet<&str> = ScratchSet::new();
        visited.insert(&**name);
        let mut pending: SmallVec<[&Exchange; 8]> = SmallVec::new();
        pending.push(x);
        // Duplicates are only possible when queues come from more than one
        // exchange, or from a headers exchange (same queue bound with two
        // argument sets); otherwise the router's sets are already distinct.
        let mut contributors = 0usize;
        let mut may_dup = false;

        while let Some(x) = pending.pop() {
            let before = out.len();
            let mut matched = false;
            let mut emit = |d: &Destination| match d {
                Destination::Queue(q) => {
                    matched = true;
                    out.push(q.clone())
                }
                Destination::Exchange(e) => {
                    matched = true;
                    // Keyed by the map's own name so `visited` borrows `self`,
                    // not the callback argument.
                    if let Some((k, next)) = self.exchanges.get_key_value(&**e) {
                        if visited.insert(&**k) {
                            pending.push(next);
                        }
                    }
                }
            };
            match &x.router {
                Router::Direct(m) => {
                    if let Some(s) = m.get(routing_key) {
                        s.as_slice().iter().for_each(&mut emit);
                    }
                }
                Router::Fanout(s) => s.as_slice().iter().for_each(&mut emit),
                Router::Topic(t) => t.for_each_match(routing_key, &mut emit),
                Router::Headers(v) => {
                    for (args, d) in v {
                        if headers_match(args, headers) {
                            emit(d);
                        }
                    }
                    may_dup = true;
                }
            }
            if out.len() > before {
                contributors += 1;
            }
            if !matched {
                if let Some(ae) = &x.alternate {
                    if let Some((k, next)) = self.exchanges.get_key_value(&**ae) {
                        if visited.insert(&**k) {
                            pending.push(next);
                        }
                    }
                }
            }
        }

        if may_dup || contributors > 1 {
            dedup_tail(out, start);
        }
        source.counters.publish_in.inc();
        source.counters.publish_out.add((out.len() > start) as u64);
    }

    /// Each exchange's counts: messages routed from it, and how many of
    /// them reached a destination.
    pub fn exchange_counters(
        &self,
    ) -> impl Iterator<Item = (&ShortStr, crate::metrics::ExchangeTotals)> {
        self.exchanges
            .iter()
            .map(|(name, x)| (name, x.counters.snapshot()))
    }
}

/// Removes duplicates from `out[start..]` in place (sorting that part).
fn dedup_tail(out: &mut Vec<ShortStr>, start: usize) {
    out[start..].sort_unstable();
    let mut w = start;
    for r in start..out.len() {
        if w == start || out[r] != out[w - 1] {
            out.swap(w, r);
            w += 1;
        }
    }
    out.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::FieldValue;
    use bytes::Bytes;

    fn q(n: &str) -> Destination {
        Destination::Queue(n.to_owned().into())
    }
    fn x(n: &str) -> Destination {
        Destination::Exchange(n.to_owned().into())
    }
    fn b(src: &str, dest: Destination, key: &str) -> Binding {
        Binding {
            source: src.to_owned().into(),
            destination: dest,
            routing_key: key.to_owned().into(),
            arguments: FieldTable::default(),
        }
    }
    fn with_args(mut bd: Binding, args: &[(&str, FieldValue)]) -> Binding {
        bd.arguments = FieldTable(
            args.iter()
                .map(|(k, v)| ((*k).to_owned().into(), v.clone()))
                .collect(),
        );
        bd
    }
    fn s(v: &'static str) -> FieldValue {
        FieldValue::LongStr(Bytes::from_static(v.as_bytes()))
    }
    fn route(t: &RoutingTable, ex: &str, key: &str, h: Option<&FieldTable>) -> Vec<String> {
        let mut out = Vec::new();
        t.route(ex, key, h, &mut out);
        let mut v: Vec<String> = out.iter().map(|s| s.to_string()).collect();
        let n = v.len();
        v.sort();
        v.dedup();
        assert_eq!(n, v.len(), "route produced duplicates: {v:?}");
        v
    }
    fn table(exchanges: &[(&str, ExchangeKind)]) -> RoutingTable {
        let mut t = RoutingTable::new();
        for (n, k) in exchanges {
            t.add_exchange((*n).to_owned().into(), *k);
        }
        t
    }
    use ExchangeKind::*;

    #[test]
    fn kind_parse_roundtrip() {
        for k in [Direct, Fanout, Topic, Headers] {
            assert_eq!(ExchangeKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ExchangeKind::parse("x-consistent-hash"), None);
    }

    #[test]
    fn direct() {
        let mut t = table(&[("d", Direct)]);
        assert!(t.bind(b("d", q("q1"), "k")));
        assert!(!t.bind(b("d", q("q1"), "k")));
        assert!(t.bind(b("d", q("q2"), "k")));
        assert!(t.bind(b("d", q("q3"), "other")));
        assert_eq!(route(&t, "d", "k", None), ["q1", "q2"]);
        assert_eq!(route(&t, "d", "other", None), ["q3"]);
        assert!(route(&t, "d", "none", None).is_empty());
        assert!(route(&t, "nope", "k", None).is_empty());
        assert!(t.unbind(&b("d", q("q1"), "k")));
        assert!(!t.unbind(&b("d", q("q1"), "k")));
        assert_eq!(route(&t, "d", "k", None), ["q2"]);
    }

    #[test]
    fn bind_requires_source_and_dest_exchange() {
        let mut t = table(&[("d", Direct)]);
        assert!(!t.bind(b("missing", q("q"), "k")));
        assert!(!t.bind(b("d", x("missing"), "k")));
        assert_eq!(t.bindings().count(), 0);
        assert!(!t.has_bindings_to_exchange("missing"));
    }

    #[test]
    fn args_make_distinct_bindings() {
        let mut t = table(&[("d", Direct), ("f", Fanout), ("t", Topic)]);
        for ex in ["d", "f", "t"] {
            let b1 = with_args(b(ex, q("q"), "k"), &[("a", s("1"))]);
            let b2 = with_args(b(ex, q("q"), "k"), &[("a", s("2"))]);
            assert!(t.bind(b1.clone()));
            assert!(t.bind(b2.clone()));
            assert!(!t.bind(b2.clone()));
            assert_eq!(route(&t, ex, "k", None), ["q"]);
            assert!(t.unbind(&b1));
            // The other binding still routes.
            assert_eq!(route(&t, ex, "k", None), ["q"]);
            assert!(t.unbind(&b2));
            assert!(route(&t, ex, "k", None).is_empty());
        }
        assert_eq!(t.bindings().count(), 0);
    }

    #[test]
    fn args_order_is_canonical() {
        let mut t = table(&[("h", Headers)]);
        let b1 = with_args(b("h", q("q"), ""), &[("a", s("1")), ("b", s("2"))]);
        let b2 = with_args(b("h", q("q"), ""), &[("b", s("2")), ("a", s("1"))]);
        assert!(t.bind(b1.clone()));
        assert!(!t.bind(b2.clone()));
        assert!(t.has_binding(&b2));
        assert!(t.unbind(&b2));
        assert!(!t.has_binding(&b1));
    }

    #[test]
    fn fanout_ignores_key() {
        let mut t = table(&[("f", Fanout)]);
        assert!(t.bind(b("f", q("q1"), "")));
        assert!(t.bind(b("f", q("q1"), "x")));
        assert!(t.bind(b("f", q("q2"), "y")));
        assert_eq!(route(&t, "f", "anything", None), ["q1", "q2"]);
        assert!(t.unbind(&b("f", q("q1"), "")));
        assert_eq!(route(&t, "f", "z", None), ["q1", "q2"]);
        assert!(t.unbind(&b("f", q("q1"), "x")));
        assert_eq!(route(&t, "f", "z", None), ["q2"]);
    }

    #[test]
    fn topic_dedups_queue_matched_by_two_patterns() {
        let mut t = table(&[("t", Topic)]);
        assert!(t.bind(b("t", q("q"), "a.*")));
        assert!(t.bind(b("t", q("q"), "#")));
        assert!(t.bind(b("t", q("r"), "*.b")));
        assert_eq!(route(&t, "t", "a.b", None), ["q", "r"]);
        assert_eq!(route(&t, "t", "", None), ["q"]);
    }

    #[test]
    fn headers_routes_and_dedups() {
        let mut t = table(&[("h", Headers)]);
        let any = with_args(
            b("h", q("q"), ""),
            &[("x-match", s("any")), ("a", s("1")), ("b", s("2"))],
        );
        let all = with_args(b("h", q("q"), "k2"), &[("a", s("1"))]);
        let other = with_args(b("h", q("r"), ""), &[("c", FieldValue::Void)]);
        assert!(t.bind(any.clone()));
        assert!(t.bind(all.clone()));
        assert!(t.bind(other));
        let h = FieldTable(vec![("a".into(), s("1")), ("c".into(), FieldValue::I8(0))]);
        assert_eq!(route(&t, "h", "ignored", Some(&h)), ["q", "r"]);
        assert!(route(&t, "h", "", None).is_empty());
        assert!(t.unbind(&any));
        assert_eq!(route(&t, "h", "", Some(&h)), ["q", "r"]);
        assert!(t.unbind(&all));
        assert_eq!(route(&t, "h", "", Some(&h)), ["r"]);
    }

    #[test]
    fn e2e_chain_and_diamond_dedup() {
        // a -> b -> c -> q, and a -> c directly, and a -> q directly.
        let mut t = table(&[("a", Fanout), ("b", Direct), ("c", Topic)]);
        assert!(t.bind(b("a", x("b"), "")));
        assert!(t.bind(b("b", x("c"), "k.x")));
        assert!(t.bind(b("c", q("q"), "k.*")));
        assert!(t.bind(b("a", x("c"), "")));
        assert!(t.bind(b("a", q("q"), "")));
        assert!(t.bind(b("b", q("bq"), "k.x")));
        assert_eq!(route(&t, "a", "k.x", None), ["bq", "q"]);
        assert_eq!(route(&t, "a", "other", None), ["q"]);
        assert_eq!(route(&t, "b", "k.x", None), ["bq", "q"]);
        assert!(t.has_bindings_to_exchange("c"));
        assert!(!t.has_bindings_to_exchange("a"));
    }

    #[test]
    fn e2e_loops_terminate() {
        let mut t = table(&[("a", Fanout), ("b", Fanout), ("c", Topic)]);
        assert!(t.bind(b("a", x("b"), "")));
        assert!(t.bind(b("b", x("a"), "")));
        assert!(t.bind(b("b", x("c"), "")));
        assert!(t.bind(b("c", x("c"), "#")));
        assert!(t.bind(b("c", x("a"), "#")));
        assert!(t.bind(b("a", q("qa"), "")));
        assert!(t.bind(b("c", q("qc"), "#")));
        for ex in ["a", "b", "c"] {
            assert_eq!(route(&t, ex, "k", None), ["qa", "qc"]);
        }
    }

    #[test]
    fn alternate_exchanges() {
        let mut t = table(&[
            ("x", Direct),
            ("ae", Fanout),
            ("ae2", Fanout),
            ("in", Direct),
        ]);
        t.set_alternate_exchange("x", Some("ae".into()));
        assert_eq!(t.alternate_exchange("x"), Some("ae"));
        assert_eq!(t.alternate_exchange("ae"), None);
        assert!(t.bind(b("x", q("q"), "k")));
        assert!(t.bind(b("ae", q("qae"), "")));
        assert_eq!(route(&t, "x", "k", None), ["q"]);
        assert_eq!(route(&t, "x", "other", None), ["qae"]);
        // A chain: ae routes nothing once unbound, its own alternate does.
        assert!(t.unbind(&b("ae", q("qae"), "")));
        t.set_alternate_exchange("ae", Some("ae2".into()));
        assert!(t.bind(b("ae2", q("q2"), "")));
        assert_eq!(route(&t, "x", "other", None), ["q2"]);
        // A cycle ends; a missing alternate routes nothing.
        t.set_alternate_exchange("ae2", Some("x".into()));
        assert!(t.unbind(&b("ae2", q("q2"), "")));
        assert!(route(&t, "x", "other", None).is_empty());
        t.set_alternate_exchange("x", Some("missing".into()));
        assert!(route(&t, "x", "other", None).is_empty());
        // Behind an exchange binding: the inner exchange's alternate is
        // used when it routes nothing; the outer one routed (to `in`).
        t.set_alternate_exchange("x", Some("ae".into()));
        t.set_alternate_exchange("ae", None);
        assert!(t.bind(b("ae", q("qae"), "")));
        assert!(t.bind(b("x", x("in"), "e")));
        assert!(route(&t, "x", "e", None).is_empty());
        t.set_alternate_exchange("in", Some("ae".into()));
        assert_eq!(route(&t, "x", "e", None), ["qae"]);
        t.set_alternate_exchange("in", None);
        assert_eq!(t.alternate_exchange("in"), None);
    }

    #[test]
    fn remove_queue_cleans_everything() {
        let mut t = table(&[("d", Direct), ("f", Fanout), ("t", Topic), ("h", Headers)]);
        for ex in ["d", "f", "t", "h"] {
            assert!(t.bind(b(ex, q("q"), "k")));
            assert!(t.bind(with_args(b(ex, q("q"), "k"), &[("a", s("1"))])));
            assert!(t.bind(b(ex, q("keep"), "k")));
        }
        assert_eq!(t.bindings().count(), 12);
        t.remove_queue("q");
        assert_eq!(t.bindings().count(), 4);
        assert!(!t.has_bindings_to_queue("q"));
        for ex in ["d", "f", "t", "h"] {
            assert_eq!(route(&t, ex, "k", None), ["keep"]);
        }
        t.remove_queue("keep");
        assert_eq!(t.bindings().count(), 0);
        for ex in ["d", "f", "t", "h"] {
            assert!(!t.has_bindings_from(ex));
            assert!(route(&t, ex, "k", None).is_empty());
        }
        assert!(t.queue_sources.is_empty());
        // Re-binding after cleanup works.
        assert!(t.bind(b("t", q("q"), "k")));
        assert_eq!(route(&t, "t", "k", None), ["q"]);
    }

    #[test]
    fn remove_exchange_cleans_source_and_destination() {
        let mut t = table(&[("a", Fanout), ("b", Fanout), ("c", Fanout)]);
        assert!(t.bind(b("a", x("b"), "")));
        assert!(t.bind(b("c", x("b"), "")));
        assert!(t.bind(b("b", x("c"), "")));
        assert!(t.bind(b("b", q("q"), "")));
        assert!(t.bind(b("a", q("qa"), "")));
        assert!(t.has_bindings_from("b"));
        t.remove_exchange("b");
        assert_eq!(t.exchange_kind("b"), None);
        assert!(!t.has_bindings_to_exchange("b"));
        assert!(!t.has_bindings_to_exchange("c"));
        assert!(!t.has_bindings_to_queue("q"));
        assert!(!t.has_bindings_from("c"));
        assert_eq!(t.bindings().count(), 1);
        assert_eq!(route(&t, "a", "", None), ["qa"]);
        // A new "b" starts clean.
        t.add_exchange("b".into(), Direct);
        assert!(!t.has_bindings_from("b"));
        assert!(route(&t, "b", "", None).is_empty());
        t.remove_exchange("unknown");
    }

    #[test]
    fn add_exchange_is_idempotent() {
        let mut t = table(&[("a", Fanout)]);
        assert!(t.bind(b("a", q("q"), "")));
        t.add_exchange("a".into(), Fanout);
        t.add_exchange("a".into(), Topic);
        assert_eq!(t.exchange_kind("a"), Some(Fanout));
        assert_eq!(route(&t, "a", "", None), ["q"]);
    }

    #[test]
    fn if_unused_semantics() {
        let mut t = table(&[("a", Fanout), ("b", Fanout)]);
        assert!(t.bind(b("a", x("b"), "")));
        assert!(t.has_bindings_from("a"));
        // Being only a destination does not make "b" used (RabbitMQ).
        assert!(!t.has_bindings_from("b"));
        assert!(t.has_bindings_to_exchange("b"));
        assert!(t.has_binding(&b("a", x("b"), "")));
        assert!(!t.has_binding(&b("a", x("b"), "k")));
        assert_eq!(t.bindings_from("a").count(), 1);
        assert_eq!(t.bindings_from("b").count(), 0);
    }

    #[test]
    fn big_fanout_and_out_prefix_preserved() {
        let mut t = table(&[("f", Fanout), ("g", Fanout)]);
        for i in 0..2000 {
            assert!(t.bind(b("f", q(&format!("q{i}")), "")));
            assert!(t.bind(b("g", q(&format!("q{i}")), "")));
        }
        assert!(t.bind(b("f", x("g"), "")));
        let mut out = vec![ShortStr::from("pre"), ShortStr::from("q1")];
        t.route("f", "", None, &mut out);
        assert_eq!(out.len(), 2002);
        assert_eq!(&out[..2], ["pre", "q1"]);
        for i in (0..2000).step_by(2) {
            t.remove_queue(&format!("q{i}"));
        }
        assert_eq!(route(&t, "f", "", None).len(), 1000);
    }
}
