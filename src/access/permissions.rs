//! Permissions: three regular expressions per user and vhost, and which
//! one each AMQP operation needs, as RabbitMQ checks them.
//!
//! The expressions are unanchored (`q` permits `aqa`), and `""` permits
//! nothing (RabbitMQ treats it as `^$`, which no resource name matches).
use regex::Regex;

/// Which of the three a check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermissionKind {
    /// Declare and delete queues and exchanges.
    Configure,
    /// Publish to an exchange; bind a queue (the queue), bind an exchange
    /// (the destination).
    Write,
    /// Get, consume and purge a queue; bind (the source exchange).
    Read,
}

impl PermissionKind {
    /// The name in RabbitMQ's logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionKind::Configure => "configure",
            PermissionKind::Write => "write",
            PermissionKind::Read => "read",
        }
    }
}

/// The three expressions as the operator wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSpec {
    /// Configure.
    pub configure: String,
    /// Write.
    pub write: String,
    /// Read.
    pub read: String,
}

/// A compiled [`PermissionSpec`].
#[derive(Debug, Clone)]
pub struct Permission {
    /// As written, for listing and export.
    pub spec: PermissionSpec,
    configure: Option<Regex>,
    write: Option<Regex>,
    read: Option<Regex>,
}

/// `""` permits nothing; anything else is an unanchored search.
fn compile_one(s: &str) -> Result<Option<Regex>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    Regex::new(s)
        .map(Some)
        .map_err(|e| format!("invalid regular expression '{s}': {e}"))
}

impl Permission {
    /// Compiles `spec`; an invalid expression is an error naming it.
    pub fn compile(spec: &PermissionSpec) -> Result<Permission, String> {
        Ok(Permission {
            configure: compile_one(&spec.configure)?,
            write: compile_one(&spec.write)?,
            read: compile_one(&spec.read)?,
            spec: spec.clone(),
        })
    }

    /// Permits nothing.
    pub fn nothing() -> Permission {
        Permission {
            spec: PermissionSpec {
                configure: String::new(),
                write: String::new(),
                read: String::new(),
            },
            configure: None,
            write: None,
            read: None,
        }
    }

    /// Whether `kind` is permitted on a resource named `name`.
    pub fn permits(&self, kind: PermissionKind, name: &str) -> bool {
        let re = match kind {
            PermissionKind::Configure => &self.configure,
            PermissionKind::Write => &self.write,
            PermissionKind::Read => &self.read,
        };
        re.as_ref().is_some_and(|re| re.is_match(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(c: &str, w: &str, r: &str) -> Permission {
        Permission::compile(&PermissionSpec {
            configure: c.into(),
            write: w.into(),
            read: r.into(),
        })
        .unwrap()
    }

    #[test]
    fn unanchored_and_empty_matches_nothing() {
        let p = perm("q", "", ".*");
        assert!(p.permits(PermissionKind::Configure, "aqa"));
        assert!(!p.permits(PermissionKind::Configure, "x"));
        assert!(!p.permits(PermissionKind::Write, ""));
        assert!(!p.permits(PermissionKind::Write, "amq.default"));
        assert!(p.permits(PermissionKind::Read, ""));
        let anchored = perm("^amq\\.gen-.*", "^$", "^$");
        assert!(anchored.permits(PermissionKind::Configure, "amq.gen-abc"));
        assert!(!anchored.permits(PermissionKind::Configure, "foo"));
    }

    #[test]
    fn invalid_expressions_are_refused() {
        let bad = PermissionSpec {
            configure: "(".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        let e = Permission::compile(&bad).unwrap_err();
        assert!(e.contains("'('"), "{e}");
    }
}
