//! Placeholder until the metrics work lands.
use std::rc::Rc;

/// The Prometheus text.
pub async fn render(
    _shard: &Rc<crate::shard::Shard>,
    _ctx: &super::control::Context,
    _per_object: bool,
) -> String {
    String::new()
}
