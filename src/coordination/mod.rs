//! Who regenerates a page, and when: claims within an isolate, the lease and back-off shared
//! through KV.

pub mod lease;
