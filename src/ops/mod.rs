//! Operations: loading configuration and policy from disk, policy reload, and the audit log.

pub mod audit;
pub mod load;
pub mod reload;
