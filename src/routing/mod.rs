//! Exchange routing (being written).
