//! Policies on the queues a shard owns.
use std::rc::Rc;

use super::Shard;
use crate::codec::ShortStr;

impl Shard {
    /// A policy or operator policy of `vhost` was set or cleared (this
    /// shard's replica has it already).
    #[allow(unused_variables)]
    pub(super) fn policies_changed(self: &Rc<Self>, vhost: &ShortStr) {
        // The owned queues of `vhost` re-read their effective policy here
        // (`Topology::effective_policies`, `policy::merged_definition`).
    }
}
