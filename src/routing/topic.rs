//! Compiled topic-exchange trie.
//!
//! Semantics follow RabbitMQ (`rabbit_db_topic_exchange`):
//! - keys and patterns are split on '.', and every piece is a word, empty
//!   ones included: "a..b" is `a`, ``, `b`; "a." is `a`, ``.
//! - the empty string is ZERO words (RabbitMQ's `split_topic_key_binary(<<>>)
//!   -> []`), not one empty word. So pattern `*` does not match key "", `#`
//!   does, and pattern "" matches only key "".
//! - `*` matches exactly one word, `#` zero or more; they are wildcards only
//!   as whole words (`a*` is a literal word).
//!
//! Matching is an NFA simulation over the trie: we keep the set of live trie
//! nodes and advance it one routing-key word at a time. Each step costs
//! O(live nodes) hash lookups, and the set is deduplicated, so patterns such as
//! `#.#.#` or many `#` cannot blow up exponentially (RabbitMQ's recursive
//! walk can, which is why it caps `#` per binding). Bindings that share no
//! prefix with the key are never touched.

use super::set::{ScratchSet, VecSet};
use ahash::AHashMap;
use std::hash::Hash;

const ROOT: u32 = 0;

/// Splits a routing key or pattern into words ("" is zero words, see above).
pub fn split_words(s: &str) -> impl Iterator<Item = &str> {
    (!s.is_empty()).then(|| s.split('.')).into_iter().flatten()
}

#[derive(Debug, Clone)]
struct Node<T> {
    words: AHashMap<Box<str>, u32>,
    star: Option<u32>,
    hash: Option<u32>,
    /// Reached through a `#` edge: the node can absorb further words itself.
    is_hash: bool,
    values: VecSet<T>,
}

impl<T> Node<T> {
    fn new(is_hash: bool) -> Self {
        Self {
            words: AHashMap::new(),
            star: None,
            hash: None,
            is_hash,
            values: VecSet::default(),
        }
    }

    fn is_leafless(&self) -> bool {
        self.values.as_slice().is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

/// A set of (pattern, value) pairs, matched against routing keys.
#[derive(Debug, Clone)]
pub struct TopicTrie<T> {
    /// Slab of nodes; index 0 is the root. Freed slots go to `free`.
    nodes: Vec<Node<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T: Clone + Eq + Hash> Default for TopicTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

enum Word<'a> {
    Star,
    Hash,
    Lit(&'a str),
}

fn classify(w: &str) -> Word<'_> {
    match w {
        "*" => Word::Star,
        "#" => Word::Hash,
        _ => Word::Lit(w),
    }
}

impl<T: Clone + Eq + Hash> TopicTrie<T> {
    /// An empty trie.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::new(false)],
            free: Vec::new(),
            len: 0,
        }
    }

    /// Number of (pattern, value) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn alloc(&mut self, is_hash: bool) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = Node::new(is_hash);
                i
            }
            None => {
                self.nodes.push(Node::new(is_hash));
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn child(&self, n: u32, w: &str) -> Option<u32> {
        let node = &self.nodes[n as usize];
        match classify(w) {
            Word::Star => node.star,
            Word::Hash => node.hash,
            Word::Lit(w) => node.words.get(w).copied(),
        }
    }

    /// Adds `value` under `pattern`; false if that exact pair was present.
    pub fn insert(&mut self, pattern: &str, value: T) -> bool {
        let mut n = ROOT;
        for w in split_words(pattern) {
            n = match self.child(n, w) {
                Some(c) => c,
                None => {
                    let kind = classify(w);
                    let c = self.alloc(matches!(kind, Word::Hash));
                    let node = &mut self.nodes[n as usize];
                    match kind {
                        Word::Star => node.star = Some(c),
                        Word::Hash => node.hash = Some(c),
                        Word::Lit(w) => {
                            node.words.insert(w.into(), c);
                        }
                    }
                    c
                }
            };
        }
        let added = self.nodes[n as usize].values.insert(value);
        self.len += added as usize;
        added
    }

    /// Removes the pair; false if it was not present. Nodes left with no
    /// values and no children are freed so dead branches cost nothing.
    pub fn remove(&mut self, pattern: &str, value: &T) -> bool {
        // Path of (node, word leading to it); patterns are short.
        let mut path: smallvec::SmallVec<[(u32, &str); 16]> = smallvec::SmallVec::new();
        let mut n = ROOT;
        for w in split_words(pattern) {
            match self.child(n, w) {
                Some(c) => {
                    path.push((c, w));
                    n = c;
                }
                None => return false,
            }
        }
        if !self.nodes[n as usize].values.remove(value) {
            return false;
        }
        self.len -= 1;
        // Prune upwards while nodes are empty.
        while let Some((c, w)) = path.pop() {
            if !self.nodes[c as usize].is_leafless() {
                break;
            }
            let parent = path.last().map_or(ROOT, |&(p, _)| p);
            let pnode = &mut self.nodes[parent as usize];
            match classify(w) {
                Word::Star => pnode.star = None,
                Word::Hash => pnode.hash = None,
                Word::Lit(w) => {
                    pnode.words.remove(w);
                }
            }
            // Drop the node's allocations now rather than on reuse.
            self.nodes[c as usize] = Node::new(false);
            self.free.push(c);
        }
        true
    }

    /// Adds `n` and the chain of `#` children below it (a `#` may match zero
    /// words). Stops at a node already present: its chain is too.
    fn add_closure(&self, mut n: u32, set: &mut ScratchSet<u32>) {
        loop {
            if !set.insert(n) {
                return;
            }
            match self.nodes[n as usize].hash {
                Some(h) => n = h,
                None => return,
            }
        }
    }

    /// Calls `f` once for each distinct value whose pattern matches
    /// `routing_key`, in unspecified order.
    pub fn for_each_match(&self, routing_key: &str, mut f: impl FnMut(&T)) {
        let mut cur = ScratchSet::new();
        let mut next = ScratchSet::new();
        self.add_closure(ROOT, &mut cur);
        for w in split_words(routing_key) {
            next.clear();
            for &n in cur.items() {
                let node = &self.nodes[n as usize];
                if let Some(&c) = node.words.get(w) {
                    self.add_closure(c, &mut next);
                }
                if let Some(c) = node.star {
                    self.add_closure(c, &mut next);
                }
                if node.is_hash {
                    // `#` swallows this word and stays live.
                    self.add_closure(n, &mut next);
                }
            }
            std::mem::swap(&mut cur, &mut next);
            if cur.is_empty() {
                return;
            }
        }

        // Values are unique within a node, so dedup is only needed when more
        // than one final node holds values.
        let mut with_values = cur
            .items()
            .iter()
            .map(|&n| &self.nodes[n as usize].values)
            .filter(|v| !v.is_empty());
        let Some(first) = with_values.next() else {
            return;
        };
        let Some(second) = with_values.next() else {
            first.as_slice().iter().for_each(f);
            return;
        };
        let mut seen: ScratchSet<&T> = ScratchSet::new();
        for values in [first, second].into_iter().chain(with_values) {
            for v in values.as_slice() {
                if seen.insert(v) {
                    f(v);
                }
            }
        }
    }
}

/// Reference matcher, straight from the definition (exponential in the worst
/// case). Used by tests and benchmarks to check and compare the trie.
pub fn naive_match(pattern: &str, routing_key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&"*", rest)) => !k.is_empty() && go(rest, &k[1..]),
            Some((w, rest)) => k.first() == Some(w) && go(rest, &k[1..]),
        }
    }
    let p: Vec<&str> = split_words(pattern).collect();
    let k: Vec<&str> = split_words(routing_key).collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matches(t: &TopicTrie<u32>, key: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.for_each_match(key, |x| v.push(*x));
        v.sort_unstable();
        v
    }

    fn single(pattern: &str, key: &str) -> bool {
        let mut t = TopicTrie::new();
        t.insert(pattern, 1u32);
        let got = !matches(&t, key).is_empty();
        assert_eq!(got, naive_match(pattern, key), "{pattern:?} vs {key:?}");
        got
    }

    #[test]
    fn split_rules() {
        assert_eq!(split_words("").count(), 0);
        assert_eq!(split_words("a..b").collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(split_words(".").collect::<Vec<_>>(), ["", ""]);
        assert_eq!(split_words("a.").collect::<Vec<_>>(), ["a", ""]);
    }

    #[test]
    fn hash_alone() {
        for k in ["", "a", "a.b", "a..b", ".", "#", "*"] {
            assert!(single("#", k), "{k}");
        }
    }

    #[test]
    fn prefix_and_suffix_hash() {
        assert!(single("a.#", "a"));
        assert!(single("a.#", "a.b"));
        assert!(single("a.#", "a.b.c"));
        assert!(!single("a.#", "b.a"));
        assert!(!single("a.#", ""));
        assert!(single("#.b", "b"));
        assert!(single("#.b", "a.b"));
        assert!(single("#.b", "x.y.b"));
        assert!(!single("#.b", "b.a"));
        assert!(single("a.#.c", "a.c"));
        assert!(single("a.#.c", "a.b.b.c"));
        assert!(!single("a.#.c", "a.b.b"));
    }

    #[test]
    fn star() {
        assert!(single("*", "a"));
        assert!(!single("*", ""));
        assert!(!single("*", "a.b"));
        assert!(single("a.*.c", "a.b.c"));
        assert!(single("a.*.c", "a..c"));
        assert!(!single("a.*.c", "a.c"));
        assert!(!single("a.*.c", "a.b.b.c"));
        assert!(single("*.*", "."));
        assert!(single("*.*", "a."));
        assert!(!single("*.*", "a"));
    }

    #[test]
    fn empty_words_and_empty_key() {
        assert!(single("", ""));
        assert!(!single("", "a"));
        assert!(!single("a", ""));
        assert!(single("a..b", "a..b"));
        assert!(!single("a..b", "a.b"));
        assert!(single("a.", "a."));
        assert!(!single("a.", "a"));
        assert!(single(".", "."));
        assert!(single("*", "*"));
        // wildcards only as whole words
        assert!(!single("a*", "ab"));
        assert!(single("a*", "a*"));
        assert!(!single("a#", "a"));
    }

    #[test]
    fn consecutive_hashes() {
        assert!(single("#.#", ""));
        assert!(single("#.#", "a.b.c"));
        assert!(single("#.*", "a"));
        assert!(!single("#.*", ""));
        assert!(single("*.#", "a"));
        assert!(single("#.#.a.#.#", "a"));
        assert!(single("#.#.a.#.#", "x.y.a.z"));
        assert!(!single("#.#.a.#.#", "x.y.z"));
        assert!(single("#.*.#.*.#", "a.b"));
        assert!(!single("#.*.#.*.#", "a"));
    }

    #[test]
    fn many_hashes_do_not_blow_up() {
        let mut t = TopicTrie::new();
        let pat = vec!["#"; 64].join(".") + ".z";
        t.insert(&pat, 1u32);
        let key = vec!["a"; 200].join(".");
        assert!(matches(&t, &key).is_empty());
        assert_eq!(matches(&t, &(key + ".z")), [1]);
    }

    #[test]
    fn dedup_and_multiple_values() {
        let mut t = TopicTrie::new();
        assert!(t.insert("a.*", 1u32));
        assert!(!t.insert("a.*", 1));
        assert!(t.insert("a.#", 1));
        assert!(t.insert("#", 1));
        assert!(t.insert("a.b", 2));
        assert!(t.insert("#.b", 3));
        assert!(t.insert("*.c", 4));
        assert_eq!(t.len(), 6);
        assert_eq!(matches(&t, "a.b"), [1, 2, 3]);
        assert_eq!(matches(&t, "x.c"), [1, 4]);
        assert_eq!(matches(&t, ""), [1]);
    }

    #[test]
    fn remove_prunes() {
        let mut t = TopicTrie::new();
        t.insert("a.b.c", 1u32);
        t.insert("a.#", 2);
        t.insert("a.b.c", 3);
        assert!(!t.remove("a.b.c", &9));
        assert!(!t.remove("a.b", &1));
        assert!(!t.remove("a.*", &2));
        assert!(t.remove("a.b.c", &1));
        assert!(!t.remove("a.b.c", &1));
        assert_eq!(matches(&t, "a.b.c"), [2, 3]);
        assert!(t.remove("a.b.c", &3));
        assert!(t.remove("a.#", &2));
        assert!(t.is_empty());
        // Everything but the root was freed.
        assert_eq!(t.nodes.len() - t.free.len(), 1);
        assert!(t.nodes[0].is_leafless());
        // Freed slots are reused.
        t.insert("x.y", 5);
        assert_eq!(matches(&t, "x.y"), [5]);
        assert_eq!(t.nodes.len(), 5); // root + a, b, c, # slots
    }

    #[test]
    fn large_fanout_at_one_node() {
        let mut t = TopicTrie::new();
        for i in 0..1000u32 {
            assert!(t.insert("#", i));
            assert!(t.insert("a.*", i));
        }
        assert_eq!(matches(&t, "a.b").len(), 1000);
        for i in 0..1000u32 {
            assert!(t.remove("#", &i));
        }
        assert_eq!(matches(&t, "a.b").len(), 1000);
        assert!(matches(&t, "b").is_empty());
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "*", "#"])
    }
    fn key_word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", ""])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn trie_agrees_with_naive(
            patterns in prop::collection::vec(prop::collection::vec(word(), 0..6), 1..24),
            keys in prop::collection::vec(prop::collection::vec(key_word(), 0..7), 1..16),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let patterns: Vec<String> = patterns.iter().map(|p| p.join(".")).collect();
            let mut t = TopicTrie::new();
            // Value i%5 so several patterns share values (exercises dedup).
            let mut live: Vec<(String, u32)> = Vec::new();
            for (i, p) in patterns.iter().enumerate() {
                let v = (i % 5) as u32;
                let fresh = !live.contains(&(p.clone(), v));
                prop_assert_eq!(t.insert(p, v), fresh);
                if fresh { live.push((p.clone(), v)); }
            }
            for ix in removals {
                if live.is_empty() { break; }
                let (p, v) = live.remove(ix.index(live.len()));
                prop_assert!(t.remove(&p, &v));
                prop_assert!(!t.remove(&p, &v));
            }
            prop_assert_eq!(t.len(), live.len());
            for k in keys {
                let k = k.join(".");
                let mut want: Vec<u32> = live.iter()
                    .filter(|(p, _)| naive_match(p, &k))
                    .map(|&(_, v)| v).collect();
                want.sort_unstable();
                want.dedup();
                prop_assert_eq!(matches(&t, &k), want, "key {:?}", k);
            }
        }
    }
}
