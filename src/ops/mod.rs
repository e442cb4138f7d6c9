//! Operations: loading configuration and policy from disk, policy reload, the audit log, the
//! file descriptor budget, and the memory estimate.

pub mod audit;
pub mod fds;
pub mod load;
pub mod reload;
pub mod shadow;
pub mod sizing;
