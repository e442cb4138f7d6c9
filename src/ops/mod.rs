//! Operations: loading configuration and policy from disk, and the audit log.

pub mod audit;
pub mod load;
